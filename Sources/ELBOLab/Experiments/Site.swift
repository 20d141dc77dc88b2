import Foundation
import Ink
import Plot

/// `results/index.html`: one self-contained page — the overview, then every experiment's
/// `What this shows`, figures (inline SVG, legends clickable) and sortable tables, with links to
/// its files of record. Inline CSS and one small inline script; nothing is fetched.
public enum ResultsSite {
    /// The page's script: a click on a legend entry hides or shows its series, a click on a
    /// column header sorts the table by it.
    static let script = """
    document.querySelectorAll('g[id$="_keyentry"]').forEach(function (k) {
      k.style.cursor = 'pointer';
      k.addEventListener('click', function () {
        var g = document.getElementById(k.id.slice(0, -'_keyentry'.length));
        if (!g) return;
        var hidden = g.getAttribute('visibility') === 'hidden';
        g.setAttribute('visibility', hidden ? 'visible' : 'hidden');
        k.setAttribute('visibility', 'visible');
        k.style.opacity = hidden ? '1' : '0.35';
      });
    });
    document.querySelectorAll('table').forEach(function (t) {
      t.querySelectorAll('th').forEach(function (th, i) {
        th.title = 'click to sort';
        th.addEventListener('click', function () {
          var rows = Array.from(t.rows).filter(function (r) { return r.querySelector('td'); });
          if (!rows.length) return;
          var up = th.getAttribute('data-up') !== '1';
          th.setAttribute('data-up', up ? '1' : '0');
          function key(r) { var s = r.cells[i] ? r.cells[i].textContent.trim() : ''; var x = parseFloat(s); return isNaN(x) ? s : x; }
          rows.sort(function (a, b) {
            var x = key(a), y = key(b);
            var c = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === 'number' ? -1 : 1);
            return up ? c : -c;
          });
          var parent = rows[0].parentNode;
          rows.forEach(function (r) { parent.appendChild(r); });
        });
      });
    });
    """

    static let css = """
    body { font-family: system-ui, sans-serif; max-width: 1400px; margin: 0 auto; padding: 1em 2em; color: #222; line-height: 1.45; }
    h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
    nav a { margin-right: 1em; }
    figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
    figcaption { font-size: 0.9em; color: #555; }
    table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
    th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
    th { background: #f3f3f3; cursor: pointer; user-select: none; }
    .shows { background: #f7fbff; border-left: 4px solid #1f77b4; padding: 0.3em 1em; }
    .files { font-size: 0.9em; }
    details { margin: 0.5em 0; }
    """

    /// An SVG written by gnuplot, made fit to sit inline in a page beside others: no XML
    /// prologue, no scripts or event attributes (the page's own script handles legend clicks),
    /// and its ids prefixed so that they are unique in the page.
    static func inline(svg: String, prefix: String) -> String {
        var s = svg
        if let start = s.range(of: "<svg") { s = String(s[start.lowerBound...]) }
        while let open = s.range(of: "<script"), let close = s.range(of: "</script>", range: open.upperBound..<s.endIndex) {
            s.removeSubrange(open.lowerBound..<close.upperBound)
        }
        s = s.replacingOccurrences(of: #"\s+on[a-z]+="[^"]*""#, with: "", options: .regularExpression)
        for id in ["gnuplot_plot_", "gpPt", "gnuplot_canvas", "coord_text"] {
            s = s.replacingOccurrences(of: "'\(id)", with: "'\(prefix)\(id)")
                .replacingOccurrences(of: "\"\(id)", with: "\"\(prefix)\(id)")
                .replacingOccurrences(of: "#\(id)", with: "#\(prefix)\(id)")
        }
        return s
    }

    /// The part of a summary.md the page shows as tables: from `## Runs` up to `## Plots`.
    static func tablesMarkdown(_ summary: String) -> String {
        guard let start = summary.range(of: "\n## Runs\n") else { return "" }
        let end = summary.range(of: "\n## Plots\n")?.lowerBound ?? summary.endIndex
        return String(summary[start.lowerBound..<max(start.lowerBound, end)])
    }

    /// The `## What this shows` list of a summary.md.
    static func showsMarkdown(_ summary: String) -> String {
        guard let start = summary.range(of: "## What this shows\n") else { return "" }
        let rest = summary[start.upperBound...]
        let end = rest.range(of: "\n## ")?.lowerBound ?? rest.endIndex
        return String(rest[..<end])
    }

    /// Writes `output/index.html` for the experiments (folder names) in `output`.
    public static func write(output: String, experiments: [(name: String, title: String, plots: [String])], overview: Bool,
                             totalSeconds: Double) throws {
        let parser = MarkdownParser()
        var sections: [Node<HTML.BodyContext>] = []
        var figure = 0
        func svgFigure(_ path: String, caption: String, link: String) -> Node<HTML.BodyContext> {
            figure += 1
            guard let svg = try? String(contentsOfFile: path, encoding: .utf8) else {
                return .p(.text("\(caption): not drawn (\(link) is missing)"))
            }
            return .element(named: "figure", nodes: [
                .raw(inline(svg: svg, prefix: "f\(figure)_")),
                .element(named: "figcaption", nodes: [.text(caption + " — "), .a(.href(link), .text("SVG")), .text(", "),
                                                      .a(.href(String(link.dropLast(4)) + ".png"), .text("PNG"))]),
            ])
        }
        if overview {
            sections.append(.section(.id("overview"), .h2(.text("Overview")),
                                     svgFigure(output + "/overview.svg", caption: "The gap to the MLE by strategy, and the gap split over training", link: "overview.svg")))
        }
        for e in experiments {
            let summary = (try? String(contentsOfFile: "\(output)/\(e.name)/summary.md", encoding: .utf8)) ?? ""
            var nodes: [Node<HTML.BodyContext>] = [.id(e.name), .h2(.text(e.title.isEmpty || e.title == e.name ? e.name : "\(e.name): \(e.title)"))]
            nodes.append(.div(.class("shows"), .h3(.text("What this shows")), .raw(parser.html(from: showsMarkdown(summary)))))
            let files = ["summary.md", "summary.csv", "curves.csv", "runs.csv", "meta.json", "spec.json", "bands.csv", "split.csv"]
                .filter { FileManager.default.fileExists(atPath: "\(output)/\(e.name)/\($0)") }
            nodes.append(.p(.class("files"), .text("Files of record and tables: "),
                            .group(files.map { f in .group(.a(.href("\(e.name)/\(f)"), .text(f)), .text(" ")) })))
            for png in e.plots where png.hasSuffix(".png") {
                let stem = String(png.dropLast(4))
                nodes.append(svgFigure("\(output)/\(e.name)/\(stem).svg", caption: ExperimentReport.captions[stem] ?? stem,
                                       link: "\(e.name)/\(stem).svg"))
            }
            nodes.append(.element(named: "details", nodes: [.element(named: "summary", nodes: [.text("Tables (click a column header to sort)")]),
                                                            .raw(parser.html(from: tablesMarkdown(summary)))]))
            sections.append(.section(.group(nodes)))
        }
        let toc: [Node<HTML.BodyContext>] = (overview ? [.a(.href("#overview"), .text("overview"))] : [])
            + experiments.map { .a(.href("#\($0.name)"), .text($0.name)) }
        let html = HTML(
            .head(.meta(.charset(.utf8)), .title("ELBOLab results"), .style(css)),
            .body(
                .h1(.text("ELBOLab results")),
                .p(.text("Written by elbolab run-all (make experiments) in \(String(format: "%.0f", totalSeconds)) s. Every file and column is explained in "),
                   .a(.href("README.md"), .text("README.md")), .text("; the same content as Markdown is in "), .a(.href("index.md"), .text("index.md")), .text(".")),
                .nav(.group(toc)),
                .group(sections),
                .script(.raw(script))
            )
        )
        try AtomicFile.write(html.render(), to: output + "/index.html")
    }
}
