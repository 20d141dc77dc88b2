import CGSL

/// A failure reported by GSL through its status codes, turned into a Swift error.
public struct GSLError: Error, CustomStringConvertible, Sendable {
    /// The GSL status code (`GSL_EDOM`, `GSL_ENOMEM`, …).
    public let status: Int32
    /// What ELBOLab was doing when GSL failed.
    public let context: String

    /// The context, the status code and GSL's own reason, on one line.
    public var description: String {
        let reason = String(cString: gsl_strerror(status))
        return "\(context): GSL error \(status) (\(reason))"
    }
}

/// Process-wide GSL and OpenBLAS set-up, done once before any numerical call.
///
/// GSL's default handler aborts the process; ELBOLab turns status codes into ``GSLError``
/// instead. OpenBLAS runs single-threaded so that results never depend on thread scheduling;
/// ELBOLab splits work across cores itself where it splits cleanly.
enum GSLRuntime {
    static let ready: Bool = {
        gsl_set_error_handler_off()
        openblas_set_num_threads(1)
        // Batch buffers (N × J, N × 2J) are allocated and freed every step; above glibc's
        // 128 KiB threshold each would be a fresh mmap, page-faulted and zeroed. Keep them on the
        // heap (up to 64 MiB; the data set itself stays mmapped and is returned when freed).
        elbolab_keep_buffers_on_heap()
        return true
    }()

    @inline(__always) static func ensure() { _ = ready }
}

/// Throws a ``GSLError`` when `status` is not `GSL_SUCCESS`.
@inline(__always)
func gslCheck(_ status: Int32, _ context: @autoclosure () -> String) throws {
    if status != Int32(GSL_SUCCESS) { throw GSLError(status: status, context: context()) }
}

/// OpenBLAS's description of itself (`OpenBLAS 0.3.21 DYNAMIC_ARCH … Haswell …`).
public func blasConfiguration() -> String {
    GSLRuntime.ensure()
    guard let c = openblas_get_config() else { return "unknown" }
    return String(cString: c)
}

/// The `p` quantile of Student's t distribution with `dof` degrees of freedom (GSL's
/// `gsl_cdf_tdist_Pinv`).
public func studentTQuantile(_ p: Double, degreesOfFreedom dof: Double) -> Double {
    gsl_cdf_tdist_Pinv(p, dof)
}

/// P(X ≤ k) for X ~ Binomial(n, p) (GSL's `gsl_cdf_binomial_P`).
public func binomialCDF(_ k: Int, probability p: Double, trials n: Int) -> Double {
    gsl_cdf_binomial_P(UInt32(k), p, UInt32(n))
}
