#!/usr/bin/env python3
"""Opens a results/index.html in headless Chromium over the DevTools protocol (--remote-debugging-pipe)
and checks: it loads with no console error or exception and no request leaves the file system, the
overview figure renders (an inline SVG with drawn series), and a click on a legend entry hides its
series. Saves a screenshot. Usage: check_page.py PAGE SCREENSHOT.png  (exit status 0 = all checks pass)."""
import base64, json, os, shutil, subprocess, sys, time

def main():
    page, shot = os.path.abspath(sys.argv[1]), sys.argv[2]
    browser = shutil.which("chromium-headless-shell") or shutil.which("chromium")
    if not browser:
        print("check_page: chromium-headless-shell is not installed (make deps installs it)", file=sys.stderr)
        return 2
    def place(read_end, write_end):
        # Chromium reads the protocol from fd 3 and writes to fd 4 (copies first: either may be 3 or 4).
        a, b = os.dup(read_end), os.dup(write_end)
        os.dup2(a, 3)
        os.dup2(b, 4)
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    profile = os.path.join(os.path.dirname(os.path.abspath(shot)), "chromium-profile")
    proc = subprocess.Popen(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
         f"--user-data-dir={profile}", "--window-size=1400,1000", "about:blank"],
        pass_fds=(3, 4), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=lambda: place(to_chrome_r, from_chrome_w))
    os.close(to_chrome_r); os.close(from_chrome_w)
    reader = os.fdopen(from_chrome_r, "rb")
    buffer = b""
    events, next_id = [], [0]

    def receive():
        nonlocal buffer
        while b"\0" not in buffer:
            chunk = reader.read1(65536)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            buffer += chunk
        message, buffer = buffer.split(b"\0", 1)
        return json.loads(message)

    def call(method, session=None, **params):
        next_id[0] += 1
        message = {"id": next_id[0], "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(to_chrome_w, json.dumps(message).encode() + b"\0")
        while True:
            m = receive()
            if m.get("id") == next_id[0]:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            events.append(m)

    failures = []
    try:
        target = call("Target.createTarget", url="about:blank")["targetId"]
        session = call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            call(f"{domain}.enable", session)
        call("Page.navigate", session, url="file://" + page)
        deadline = time.time() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in events):
            if time.time() > deadline:
                raise RuntimeError("the page did not finish loading in 60 s")
            events.append(receive())

        def evaluate(expression):
            r = call("Runtime.evaluate", session, expression=expression, returnByValue=True)
            if "exceptionDetails" in r:
                raise RuntimeError(f"evaluating {expression[:60]}…: {r['exceptionDetails']}")
            return r["result"].get("value")

        overview = evaluate("""(() => { const s = document.querySelector('#overview svg');
            if (!s) return null; const b = s.getBoundingClientRect();
            return {width: b.width, height: b.height, series: s.querySelectorAll('g[id$="_keyentry"]').length,
                    paths: s.querySelectorAll('g[id*="gnuplot_plot_"] path').length}; })()""")
        if not overview or overview["width"] < 300 or overview["height"] < 100 or overview["series"] < 2 or overview["paths"] < 4:
            failures.append(f"the overview does not render: {overview}")
        toggled = evaluate("""(() => { const k = document.querySelector('#overview g[id$="_keyentry"]');
            if (!k) return 'no legend entry';
            const g = document.getElementById(k.id.slice(0, -'_keyentry'.length));
            const path = Array.from(g.querySelectorAll('path')).find(p => !k.contains(p));
            if (!path) return 'the series draws nothing';
            const before = getComputedStyle(path).visibility;
            k.dispatchEvent(new MouseEvent('click', {bubbles: true}));
            const after = getComputedStyle(path).visibility, key = getComputedStyle(k).visibility;
            k.dispatchEvent(new MouseEvent('click', {bubbles: true}));
            const again = getComputedStyle(path).visibility;
            return before === 'visible' && after === 'hidden' && key === 'visible' && again === 'visible' ? 'ok'
                : `visibility ${before} → ${after} → ${again}, legend entry ${key}`; })()""")
        if toggled != "ok":
            failures.append(f"a legend click does not hide its series: {toggled}")
        sections = evaluate("document.querySelectorAll('section').length")
        shows = evaluate("document.querySelectorAll('.shows li').length")
        sortable = evaluate("""(() => { const t = Array.from(document.querySelectorAll('table')).find(t => t.rows.length > 3);
            if (!t) return 'no table'; const th = t.querySelector('th'); th.click();
            const first = Array.from(t.rows).filter(r => r.querySelector('td')).map(r => r.cells[0].textContent);
            th.click();
            const second = Array.from(t.rows).filter(r => r.querySelector('td')).map(r => r.cells[0].textContent);
            return JSON.stringify(first.slice().reverse()) === JSON.stringify(second) || new Set(first).size < first.length ? 'ok' : 'not sorted'; })()""")
        if sortable != "ok":
            failures.append(f"tables do not sort: {sortable}")
        shot_data = call("Page.captureScreenshot", session, format="png", captureBeyondViewport=False)["data"]
        with open(shot, "wb") as f:
            f.write(base64.b64decode(shot_data))
        # Console errors, exceptions, and any request that is not the page itself or inline data.
        for e in events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                failures.append(f"exception: {p['exceptionDetails'].get('text')} {p['exceptionDetails'].get('exception', {}).get('description', '')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                failures.append(f"console error: {[a.get('value', a.get('description')) for a in p.get('args', [])]}")
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                failures.append(f"log error: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif m == "Network.requestWillBeSent":
                url = p["request"]["url"]
                if url != "file://" + page and not url.startswith("data:"):
                    failures.append(f"the page fetched {url}: it must be self-contained")
        print(f"check_page: {page}: {sections} sections, {shows} findings, overview {overview}, legend click {toggled}, "
              f"tables {sortable}; screenshot {shot}")
    except Exception as error:  # a protocol failure is a failed check, reported on one line
        failures.append(str(error))
    finally:
        try:
            os.close(to_chrome_w)
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)
    for f in failures:
        print(f"check_page: FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0

if __name__ == "__main__":
    sys.exit(main())
