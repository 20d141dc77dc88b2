// ELBOLab is the library's one module for its users: the layers are targets of their own (so the
// compiler keeps each from importing upward), re-exported here.
@_exported import ELBOLabNumerics
@_exported import ELBOLabModel
@_exported import ELBOLabVariational
@_exported import ELBOLabEngines
@_exported import ELBOLabExperiments
