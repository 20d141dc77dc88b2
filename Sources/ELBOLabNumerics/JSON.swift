import Foundation

// The text forms every layer writes: numbers in result files, user text quoted in one-line error
// messages (the model's CSV reader and the option table quote with JSON.quote too).

/// A number in its shortest exact decimal form (`0.1`, `1e-07`, `-1234.5`).
public func formatNumber(_ x: Double) -> String {
    if x == x.rounded() && abs(x) < 1e15 { return String(Int64(x)) }
    return String(x)
}

/// A JSON value with ordered keys, for readable output files.
public indirect enum JSON: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    public static func == (a: JSON, b: JSON) -> Bool { a.text() == b.text() }

    /// A number, or null when it is nil or not finite (JSON has no NaN).
    public static func number(_ x: Double?) -> JSON {
        guard let x, x.isFinite else { return .null }
        return .number(x)
    }

    /// The JSON text, pretty-printed.
    public func text(indent: String = "") -> String {
        switch self {
        case .null: return "null"
        case let .bool(b): return b ? "true" : "false"
        case let .number(x): return x.isFinite ? formatNumber(x) : "null"
        case let .string(s): return JSON.quote(s)
        case let .array(items):
            if items.allSatisfy({ if case .number = $0 { return true }; if case .null = $0 { return true }; return false }) {
                return "[" + items.map { $0.text() }.joined(separator: ", ") + "]"
            }
            let inner = indent + "  "
            return "[\n" + items.map { inner + $0.text(indent: inner) }.joined(separator: ",\n") + "\n" + indent + "]"
        case let .object(pairs):
            if pairs.isEmpty { return "{}" }
            let inner = indent + "  "
            return "{\n" + pairs.map { inner + JSON.quote($0.0) + ": " + $0.1.text(indent: inner) }.joined(separator: ",\n") + "\n" + indent + "}"
        }
    }

    /// `s` as a JSON string literal, on one line: every control character and every Unicode line
    /// or paragraph separator is escaped, so that messages quoting user text stay one line too.
    package static func quote(_ s: String) -> String {
        "\"" + escaped(s) + "\""
    }

    /// `s` with JSON's escapes, as ``quote(_:)`` writes it between the quotes.
    package static func escaped(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if c.value < 0x20 || (0x7F...0x9F).contains(c.value) || c.value == 0x2028 || c.value == 0x2029 {
                    out += String(format: "\\u%04x", c.value)
                } else {
                    out.unicodeScalars.append(c)
                }
            }
        }
        return out
    }
}
