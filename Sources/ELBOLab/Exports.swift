// The numerics layer (matrices, BLAS and LAPACK faces, random numbers, optimisers) is its own
// target; a user of ELBOLab imports one module and sees it too.
@_exported import ELBOLabNumerics
