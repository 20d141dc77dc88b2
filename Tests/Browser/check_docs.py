#!/usr/bin/env python3
"""Opens the DocC site of `make docs` in headless Chromium (DevTools protocol over a pipe), served
over HTTP from a local port, and checks: each layer module's landing page renders its title and
the first words of its catalogue's overview, and cross-module links on chosen pages are links
(not code voice) that open the page of the symbol they name. Saves a screenshot per module page.
Usage: check_docs.py DOCS_FOLDER SCREENSHOT_FOLDER  (exit status 0 = all checks pass)."""
import base64, functools, http.server, json, os, shutil, subprocess, sys, threading, time

# A module page: its title and words its catalogue's overview starts with.
MODULES = [
    ("ELBOLabNumerics", "ELBOLabNumerics is the only module that sees GSL"),
    ("ELBOLabModel", "ELBOLabModel imports only ELBOLabNumerics"),
    ("ELBOLabVariational", "ELBOLabVariational imports ELBOLabModel"),
    ("ELBOLabEngines", "ELBOLabEngines imports ELBOLabVariational"),
    ("ELBOLabExperiments", "ELBOLabExperiments is the top layer"),
]

# Links across modules that the layer targets' direct dependencies make resolvable: the page,
# the page the link must lead to, and the title that page shows.
LINKS = [
    ("/documentation/elbolabengines/fitoptiontable/parse(_:into:)", "/documentation/elbolabnumerics/inputerror", "InputError"),
    ("/documentation/elbolabengines/optimizerkind/lbfgs", "/documentation/elbolabnumerics/lbfgsminimizer", "LBFGSMinimizer"),
    ("/documentation/elbolabengines/stepwork/solvercoversobjective", "/documentation/elbolabnumerics/solverstatus/stalled",
     "SolverStatus.stalled"),
    ("/documentation/elbolabexperiments/collapsestudy",
     "/documentation/elbolabvariational/collapsediagnostics/closedform(eigenvalues:noisevariance:latent:)",
     "closedForm(eigenvalues:noiseVariance:latent:)"),
    ("/documentation/elbolabexperiments/csvtable", "/documentation/elbolabnumerics/formatnumber(_:)", "formatNumber(_:)"),
    ("/documentation/elbolabvariational/importanceweightedbound/estimate(data:model:q:particles:replicates:rng:)",
     "/documentation/elbolabnumerics/inputerror", "InputError"),
    ("/documentation/elbolabengines", "/documentation/elbolabvariational/scorer", "Scorer"),
]


class Chromium:
    """Headless Chromium driven over --remote-debugging-pipe: one page, navigate and evaluate."""

    def __init__(self, profile):
        browser = shutil.which("chromium-headless-shell") or shutil.which("chromium")
        if not browser:
            raise RuntimeError("chromium-headless-shell is not installed (make deps installs it)")
        to_r, self.to_w = os.pipe()
        from_r, from_w = os.pipe()

        def place():
            # Chromium reads the protocol from fd 3 and writes to fd 4 (copies first: either may be 3 or 4).
            a, b = os.dup(to_r), os.dup(from_w)
            os.dup2(a, 3)
            os.dup2(b, 4)
        self.profile = profile
        self.proc = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
             f"--user-data-dir={profile}", "--window-size=1400,1000", "about:blank"],
            pass_fds=(3, 4), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=place)
        os.close(to_r)
        os.close(from_w)
        self.reader = os.fdopen(from_r, "rb")
        self.buffer, self.events, self.next_id = b"", [], 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime"):
            self.call(f"{domain}.enable", self.session)

    def receive(self):
        while b"\0" not in self.buffer:
            chunk = self.reader.read1(65536)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method, session=None, **params):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.to_w, json.dumps(message).encode() + b"\0")
        while True:
            m = self.receive()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def evaluate(self, expression):
        r = self.call("Runtime.evaluate", self.session, expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluating {expression[:60]}…: {r['exceptionDetails']}")
        return r["result"].get("value")

    def open(self, url):
        """Loads `url` and waits until DocC's app has rendered a title (it renders in script)."""
        self.events.clear()
        self.call("Page.navigate", self.session, url=url)
        deadline = time.time() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.time() > deadline:
                raise RuntimeError(f"{url}: did not finish loading in 60 s")
            self.events.append(self.receive())
        while time.time() < deadline:
            title = self.evaluate("(() => { const h = document.querySelector('main h1');"
                                  " return h ? h.textContent.trim() : ''; })()")
            if title:
                return title
            time.sleep(0.2)
        raise RuntimeError(f"{url}: no title rendered in 60 s")

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", self.session, format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            os.close(self.to_w)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def main():
    docs, shots = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    if not os.path.isfile(os.path.join(docs, "documentation", "elbolab", "index.html")):
        print(f"check_docs: {docs} holds no DocC site (run make docs first)", file=sys.stderr)
        return 2
    os.makedirs(shots, exist_ok=True)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    handler = functools.partial(Quiet, directory=docs)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = f"http://127.0.0.1:{server.server_address[1]}"
    failures, browser = [], None
    try:
        browser = Chromium(os.path.join(shots, "chromium-profile"))
        for module, overview in MODULES:
            url = f"{root}/documentation/{module.lower()}/"
            title = browser.open(url)
            text = browser.evaluate("document.querySelector('main').innerText")
            topics = browser.evaluate("Array.from(document.querySelectorAll('main h3')).map(h => h.textContent.trim())")
            shot = os.path.join(shots, f"{module}.png")
            browser.screenshot(shot)
            if title != module:
                failures.append(f"{url}: title {title!r}, not {module!r}")
            elif overview not in " ".join(text.split()):
                failures.append(f"{url}: the overview does not start with {overview!r}")
            else:
                print(f"check_docs: {module}: title and overview render, topic groups {topics}; screenshot {shot}")
        for page, target, expected in LINKS:
            browser.open(root + page)
            href = browser.evaluate(f"""(() => {{ const a = Array.from(document.querySelectorAll('main a'))
                .find(a => decodeURI(new URL(a.href).pathname).replace(/\\/$/, '') === {json.dumps(target)});
                return a ? a.href : null; }})()""")
            if not href:
                failures.append(f"{page}: no link to {target} (unresolved links render as code voice)")
                continue
            title = browser.open(href)
            if title != expected:
                failures.append(f"{page}: the link to {target} opens a page titled {title!r}, not {expected!r}")
            else:
                print(f"check_docs: {page} links {target}, which opens '{title}'")
    except Exception as error:  # a protocol failure is a failed check, reported on one line
        failures.append(str(error))
    finally:
        if browser:
            browser.close()
        server.shutdown()
    for f in failures:
        print(f"check_docs: FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
