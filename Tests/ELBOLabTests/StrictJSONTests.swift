import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

// The strict JSON reader (issue 15): what a lenient reader settles silently is refused in one
// line naming the file, the line and the problem; numbers read exactly as Swift's own
// correctly rounded parser reads them.

private func parse(_ text: String) throws -> SpecValue {
    try StrictJSON.parse(Data(text.utf8), path: "f.json")
}

/// The message of the InputError `text` is refused with.
private func refusal(_ text: String) -> String? {
    do { _ = try parse(text); return nil } catch let e as InputError { return e.message } catch { return "\(error)" }
}

@Suite("Strict JSON")
struct StrictJSONTests {
    @Test("refused, with line and problem", arguments: [
        ("{\n \"W\": 1,\n \"W\": 2\n}", "line 3, column 2: the key \"W\" is repeated (first on line 2)"),
        ("{\"a\": {\"x\": 1, \"x\": 1}}", "the key \"x\" is repeated"),
        ("[1e400]", "line 1, column 2: the number 1e400 overflows a double"),
        ("[-1.8e308]", "overflows a double"),
        ("{\"a\": 1} x", "line 1, column 10: unexpected \"x\" after the JSON value"),
        ("{\"a\": 1}\n{\"b\": 2}", "line 2, column 1: unexpected \"{\" after the JSON value"),
        ("[1,]", "unexpected \"]\" (expected a value"),
        ("{\"a\": 1,}", "expected a key in double quotes"),
        ("[01]", "must not start with 0"),
        ("[1.]", "a '.' in a number must be followed by digits"),
        ("[.5]", "unexpected \".\""),
        ("[NaN]", "unexpected \"N\""),
        ("[Infinity]", "unexpected \"I\""),
        ("[+1]", "unexpected \"+\""),
        ("[\"a\tb\"]", "a control character (0x9) inside a string"),
        ("[\"\\ud800\"]", "a lone surrogate \\uD800"),
        ("[\"\\x\"]", "an invalid escape '\\x'"),
        ("[\"\\\n\"]", "line 1, column 3: an invalid escape '\\' before the byte 0x0A"),
        ("// comment\n{}", "unexpected \"/\""),
        ("{'a': 1}", "expected a key in double quotes"),
        ("", "the file is empty"),
        ("[1", "unexpected end of the file (expected ',' or ']')"),
        ("[\"abc", "unexpected end of the file inside a string"),
    ])
    func refused(_ text: String, _ expected: String) throws {
        let message = try #require(refusal(text), "accepted: \(text)")
        #expect(message.hasPrefix("f.json: is not valid JSON: line "), "\(message)")
        #expect(message.contains(expected), "\(message)")
        #expect(!message.contains { $0.isNewline })
    }

    @Test("nesting: 64 levels are read, 65 refused")
    func nesting() throws {
        let deepest = String(repeating: "[", count: StrictJSON.maxDepth) + String(repeating: "]", count: StrictJSON.maxDepth)
        _ = try parse(deepest)
        let tooDeep = "[" + deepest + "]"
        #expect(refusal(tooDeep)?.contains("nesting deeper than 64 arrays and objects") == true)
        // Far deeper input must not exhaust the stack either: refused at level 65.
        #expect(refusal(String(repeating: "[", count: 1_000_000))?.contains("nesting deeper") == true)
    }

    @Test("numbers read as Swift's correctly rounded parser reads them")
    func numbersExact() throws {
        var texts = ["0", "-0", "0.1", "0.30000000000000004", "2.2250738585072014e-308", "4.9e-324", "1e-400",
                     "1.7976931348623157e308", "9007199254740993", "1E+2", "-12.5e-3", "123456789012345678901234567890"]
        let rng = RandomSource(seed: 15)
        for _ in 0..<2000 {
            let bits = UInt64(rng.index(below: 1 << 31)) << 33 | UInt64(rng.index(below: 1 << 31)) << 2 | UInt64(rng.index(below: 4))
            let x = Double(bitPattern: bits)
            if x.isFinite { texts.append("\(x)") }
            texts.append(String(format: "%.17g", rng.gaussian() * 1e3))
        }
        for t in texts {
            guard case let .array(items) = try parse("[\(t)]"), case let .number(x)? = items.first else {
                Issue.record("\(t) did not read as a number"); continue
            }
            let reference = try #require(Double(t))
            #expect(x.bitPattern == reference.bitPattern, "\(t): \(x) vs \(reference)")
        }
    }

    @Test("strings, escapes and the usual values read")
    func values() throws {
        let v = try parse("\u{FEFF}{\"s\": \"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00é\", \"t\": true, \"f\": false, \"n\": null, \"a\": [], \"o\": {}}")
        guard case let .object(o) = v else { Issue.record("not an object"); return }
        if case let .string(s)? = o["s"] { #expect(s == "a\"\\/\u{8}\u{C}\n\r\té😀é") } else { Issue.record("s") }
        if case .bool(true)? = o["t"] {} else { Issue.record("t") }
        if case .bool(false)? = o["f"] {} else { Issue.record("f") }
        if case .null? = o["n"] {} else { Issue.record("n") }
        if case let .array(a)? = o["a"] { #expect(a.isEmpty) } else { Issue.record("a") }
    }

    @Test("params.json and specs go through it: a repeated W is refused")
    func callers() throws {
        let params = "{\"W\": [[1]], \"b\": [0], \"W\": [[2]], \"noise_variance\": 1}"
        #expect(throws: InputError("p.json: is not valid JSON: line 1, column 24: the key \"W\" is repeated (first on line 1); keep one")) {
            try ParamsFile.parse(Data(params.utf8), path: "p.json")
        }
        let spec = "{\"name\": \"x\", \"name\": \"y\"}"
        #expect(throws: InputError("s.json: is not valid JSON: line 1, column 15: the key \"name\" is repeated (first on line 1); keep one")) {
            try ExperimentSpec.parse(Data(spec.utf8), path: "s.json")
        }
    }
}
