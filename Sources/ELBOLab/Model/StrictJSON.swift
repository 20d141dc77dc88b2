#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A strict reader of JSON (RFC 8259) for the files users write: specs and parameters.
///
/// Besides the grammar itself it refuses what a lenient reader settles silently: a key repeated
/// in one object (which one wins would be an accident of the reader), a number too large for a
/// double, anything after the value, nesting deeper than ``maxDepth``, invalid UTF-8, lone
/// surrogate escapes. Every refusal is one ``InputError``:
/// `spec.json: is not valid JSON: line 3, column 9: the key "W" is repeated (first on line 2)`.
///
/// Numbers are converted by `strtod` on the exact token, so they are correctly rounded.
package enum StrictJSON {
    /// The deepest nesting of arrays and objects accepted (a spec needs about 5).
    static let maxDepth = 64

    /// The value in `bytes`; `path` names the file in messages.
    package static func parse(_ bytes: Data, path: String) throws -> SpecValue {
        try bytes.withUnsafeBytes { raw in
            var parser = Parser(bytes: raw.bindMemory(to: UInt8.self), path: path)
            return try parser.document()
        }
    }

    private struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        let path: String
        var i = 0
        var depth = 0

        init(bytes: UnsafeBufferPointer<UInt8>, path: String) {
            self.bytes = bytes
            self.path = path
        }

        /// The line and column (1-based, columns in bytes) of `offset`.
        func position(_ offset: Int) -> (line: Int, column: Int) {
            var line = 1, lineStart = 0
            for k in 0..<min(offset, bytes.count) where bytes[k] == 0x0A {
                line += 1
                lineStart = k + 1
            }
            return (line, offset - lineStart + 1)
        }

        func fail(_ problem: String, at offset: Int? = nil) -> InputError {
            let p = position(offset ?? i)
            return InputError("\(path): is not valid JSON: line \(p.line), column \(p.column): \(problem)")
        }

        /// What stands at the current offset, for messages.
        var found: String {
            guard i < bytes.count else { return "the end of the file" }
            let c = bytes[i]
            if c >= 0x21 && c < 0x7F { return JSON.quote(String(UnicodeScalar(c))) }
            return String(format: "the byte 0x%02X", c)
        }

        mutating func document() throws -> SpecValue {
            if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { i = 3 }
            skipSpace()
            if i >= bytes.count { throw fail("the file is empty (expected a JSON value)") }
            let value = try parseValue()
            skipSpace()
            if i < bytes.count { throw fail("unexpected \(found) after the JSON value (one value per file)") }
            return value
        }

        mutating func skipSpace() {
            while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
        }

        mutating func parseValue() throws -> SpecValue {
            guard i < bytes.count else { throw fail("unexpected end of the file (expected a value)") }
            switch bytes[i] {
            case UInt8(ascii: "{"): return try parseObject()
            case UInt8(ascii: "["): return try parseArray()
            case UInt8(ascii: "\""): return .string(try parseString())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
            default: throw fail("unexpected \(found) (expected a value: an object, array, string, number, true, false or null)")
            }
        }

        mutating func literal(_ word: String) throws {
            let w = Array(word.utf8)
            guard i + w.count <= bytes.count, w.indices.allSatisfy({ bytes[i + $0] == w[$0] }) else {
                throw fail("unexpected \(found) (expected a value)")
            }
            i += w.count
        }

        mutating func enter() throws {
            depth += 1
            if depth > StrictJSON.maxDepth {
                throw fail("nesting deeper than \(StrictJSON.maxDepth) arrays and objects")
            }
        }

        mutating func parseObject() throws -> SpecValue {
            try enter()
            i += 1
            var members: [String: SpecValue] = [:]
            var lines: [String: Int] = [:]
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") {
                i += 1
                depth -= 1
                return .object(members)
            }
            while true {
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else {
                    throw fail("unexpected \(found) (expected a key in double quotes)")
                }
                let keyStart = i
                let key = try parseString()
                if let first = lines[key] {
                    throw fail("the key \(JSON.quote(key)) is repeated (first on line \(first)); keep one", at: keyStart)
                }
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else {
                    throw fail("unexpected \(found) (expected ':' after the key \(JSON.quote(key)))")
                }
                i += 1
                skipSpace()
                members[key] = try parseValue()
                lines[key] = position(keyStart).line
                skipSpace()
                guard i < bytes.count else { throw fail("unexpected end of the file (expected ',' or '}')") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "}") { i += 1; break }
                throw fail("unexpected \(found) (expected ',' or '}')")
            }
            depth -= 1
            return .object(members)
        }

        mutating func parseArray() throws -> SpecValue {
            try enter()
            i += 1
            var items: [SpecValue] = []
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") {
                i += 1
                depth -= 1
                return .array(items)
            }
            while true {
                skipSpace()
                items.append(try parseValue())
                skipSpace()
                guard i < bytes.count else { throw fail("unexpected end of the file (expected ',' or ']')") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "]") { i += 1; break }
                throw fail("unexpected \(found) (expected ',' or ']')")
            }
            depth -= 1
            return .array(items)
        }

        /// A number by JSON's grammar, converted by strtod on exactly its characters.
        mutating func parseNumber() throws -> Double {
            let start = i
            func digits() -> Int {
                let from = i
                while i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 { i += 1 }
                return i - from
            }
            if bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 else { throw fail("a '-' must be followed by digits") }
            if bytes[i] == UInt8(ascii: "0") {
                i += 1
                if i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 { throw fail("a number must not start with 0 (leading zeros)", at: start) }
            } else {
                _ = digits()
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
                i += 1
                if digits() == 0 { throw fail("a '.' in a number must be followed by digits") }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                i += 1
                if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
                if digits() == 0 { throw fail("an exponent in a number must have digits") }
            }
            var token = [CChar](repeating: 0, count: i - start + 1)
            for k in start..<i { token[k - start] = CChar(bitPattern: bytes[k]) }
            errno = 0
            let value = strtod(token, nil)
            if !value.isFinite || (errno == ERANGE && abs(value) > 1) {
                let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<min(i, start + 40)]), as: UTF8.self)
                throw fail("the number \(text)\(i - start > 40 ? "…" : "") overflows a double (magnitude above 1.8e308)", at: start)
            }
            return value
        }

        /// A string: valid UTF-8, no raw control characters, JSON's escapes, paired surrogates.
        mutating func parseString() throws -> String {
            i += 1   // the opening quote
            var out: [UInt8] = []
            while true {
                guard i < bytes.count else { throw fail("unexpected end of the file inside a string (missing '\"')") }
                let c = bytes[i]
                if c == UInt8(ascii: "\"") { i += 1; break }
                if c < 0x20 { throw fail("a control character (0x\(String(c, radix: 16, uppercase: true))) inside a string: escape it (\\n, \\t, \\u00XX)") }
                if c == UInt8(ascii: "\\") {
                    i += 1
                    guard i < bytes.count else { throw fail("unexpected end of the file after '\\'") }
                    let e = bytes[i]
                    i += 1
                    switch e {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if (0xD800...0xDBFF).contains(scalar) {
                            guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                                throw fail("a lone surrogate \\u\(String(scalar, radix: 16, uppercase: true)) (not a character)", at: i - 6)
                            }
                            i += 2
                            let low = try hex4()
                            guard (0xDC00...0xDFFF).contains(low) else { throw fail("a lone surrogate \\u\(String(scalar, radix: 16, uppercase: true)) (not a character)", at: i - 12) }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else if (0xDC00...0xDFFF).contains(scalar) {
                            throw fail("a lone surrogate \\u\(String(scalar, radix: 16, uppercase: true)) (not a character)", at: i - 6)
                        }
                        guard let u = UnicodeScalar(scalar) else { throw fail("an invalid \\u escape") }
                        UTF8.encode(u) { out.append($0) }
                    default:
                        // The escaped character is shown escaped: a raw line break would split the message.
                        let shown = e >= 0x21 && e < 0x7F ? "'\\\(String(UnicodeScalar(e)))'" : String(format: "'\\' before the byte 0x%02X", e)
                        throw fail("an invalid escape \(shown) (JSON has \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)", at: i - 2)
                    }
                    continue
                }
                out.append(c)
                i += 1
            }
            guard let s = String(validating: out, as: UTF8.self) else { throw fail("a string is not valid UTF-8") }
            return s
        }

        mutating func hex4() throws -> UInt32 {
            guard i + 4 <= bytes.count else { throw fail("a \\u escape needs four hexadecimal digits") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[i]
                let d: UInt32
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - 0x30)
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - 0x61 + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - 0x41 + 10)
                default: throw fail("a \\u escape needs four hexadecimal digits")
                }
                v = v * 16 + d
                i += 1
            }
            return v
        }
    }
}

/// A JSON value as the spec reader sees it (read by ``StrictJSON``): JSON's own types, strictly (`true` is not 1).
package enum SpecValue: Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([SpecValue])
    case object([String: SpecValue])

    /// How the value reads in a message: `"vae"`, `2.5`, `true`, `an array`.
    package var shown: String {
        switch self {
        case .null: return "null"
        case let .bool(b): return b ? "true" : "false"
        case let .number(x): return formatNumber(x)
        case let .string(s): return JSON.quote(s)
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}
