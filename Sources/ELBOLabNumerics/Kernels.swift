#if canImport(Glibc)
import Glibc
#endif
import ELBOLabKernels

/// Whether ELBOLab's vector kernels (the `ELBOLabKernels` module) run here.
public enum Kernels {
    /// True when the kernels suit this processor (x86-64 with AVX2 and FMA; elsewhere they are not built)
    /// and `ELBOLAB_KERNELS=portable` is not set in the environment. The environment switch
    /// keeps the portable paths, for side-by-side timing and for checking one against the other;
    /// it is read when an engine is made.
    public static var usable: Bool {
        if let value = getenv("ELBOLAB_KERNELS"), String(cString: value) == "portable" { return false }
        return processorRunsThem
    }

    private static let processorRunsThem = kernelsSupported

    /// `out[i] = exp(scale · x[i])`: the vector kernel when `vector` (callers pass ``usable``,
    /// read once), else libm's exp. The two agree within about one ulp.
    public static func exponentials(of x: UnsafeBufferPointer<Double>, scaledBy scale: Double,
                             into out: UnsafeMutableBufferPointer<Double>, vector: Bool) {
        if vector { return ELBOLabKernels.exponentials(of: x, scaledBy: scale, into: out) }
        for i in 0..<x.count { out[i] = exp(scale * x[i]) }
    }
}
