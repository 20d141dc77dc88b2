import Foundation

/// `posterior.csv`: the q each point ends a fit with, one row per data point.
///
/// Mean field: `m_1,…,m_J,v_1,…,v_J` (means, then variances). Full covariance: `m_1,…,m_J`, then
/// the lower-triangular Cholesky factor L_n of S_n = L_n L_nᵀ row by row, `l_1_1,l_2_1,l_2_2,…,l_J_J`.
/// Numbers are written in their shortest exact form, so the file reads back bit for bit.
public enum PosteriorFile {
    /// The header fields for `family` and J latents.
    public static func header(_ family: GaussianPosteriors.Family, latent j: Int) -> [String] {
        let means = (1...max(j, 1)).prefix(j).map { "m_\($0)" }
        switch family {
        case .diagonal: return means + (1...max(j, 1)).prefix(j).map { "v_\($0)" }
        case .full: return means + (0..<j).flatMap { a in (0...a).map { "l_\(a + 1)_\($0 + 1)" } }
        }
    }

    /// The CSV text of `q`.
    public static func csv(_ q: GaussianPosteriors) -> String {
        let j = q.latent
        var out = header(q.family, latent: j).joined(separator: ",") + "\n"
        out.reserveCapacity(q.count * (j + j * j) * 20)
        for n in 0..<q.count {
            let row = q.scales.rows == 1 ? 0 : n
            var fields = (0..<j).map { formatNumber(q.means[n, $0]) }
            switch q.family {
            case .diagonal:
                fields += (0..<j).map { formatNumber(q.scales[row, $0]) }
            case .full:
                for a in 0..<j { for b in 0...a { fields.append(formatNumber(q.scales[row, a * j + b])) } }
            }
            out += fields.joined(separator: ",") + "\n"
        }
        return out
    }

    /// Reads a posterior file. - Throws: ``/ELBOLabNumerics/InputError`` naming the file and what is wrong.
    public static func read(path: String) throws -> GaussianPosteriors {
        try parse([UInt8](try readFile(path, what: "posterior file")), name: path)
    }

    /// Reads the contents of a posterior file; `name` stands for the file in messages.
    public static func parse(_ bytes: [UInt8], name: String) throws -> GaussianPosteriors {
        let firstLine = bytes.prefix { $0 != UInt8(ascii: "\n") }
        let fields = String(decoding: firstLine, as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",").map(String.init)
        let j = fields.prefix { $0.hasPrefix("m_") }.count
        let family: GaussianPosteriors.Family
        if fields == header(.diagonal, latent: j) {
            family = .diagonal
        } else if fields == header(.full, latent: j) {
            family = .full
        } else {
            throw InputError("\(name): the header must be m_1,…,m_J then v_1,…,v_J (mean field) or l_1_1,l_2_1,…,l_J_J (full covariance)")
        }
        guard j >= 1 else { throw InputError("\(name): no m_ columns: the header must start with m_1") }
        let table = try CSV.read(bytes: bytes, name: name)
        guard table.cols == fields.count else {
            throw InputError("\(name): rows have \(table.cols) numbers but the header names \(fields.count) columns")
        }
        let n = table.rows
        var means = Matrix(rows: n, cols: j)
        var scales = Matrix(rows: n, cols: family == .diagonal ? j : j * j)
        for r in 0..<n {
            for c in 0..<j { means[r, c] = table[r, c] }
            switch family {
            case .diagonal:
                for c in 0..<j {
                    let v = table[r, j + c]
                    guard v > 0 && v.isFinite else {
                        throw InputError("\(name): row \(r + 1): variance v_\(c + 1) = \(v) must be a positive number")
                    }
                    scales[r, c] = v
                }
            case .full:
                var k = j
                for a in 0..<j {
                    for b in 0...a {
                        let l = table[r, k]
                        guard a != b || (l > 0 && l.isFinite) else {
                            throw InputError("\(name): row \(r + 1): l_\(a + 1)_\(a + 1) = \(l) must be positive (a Cholesky factor)")
                        }
                        scales[r, a * j + b] = l
                        k += 1
                    }
                }
            }
        }
        return GaussianPosteriors(means: means, family: family, scales: scales)
    }
}
