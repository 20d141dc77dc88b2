// Every file of this layer sees the layer below (and, through it, the ones under that).
@_exported import ELBOLabVariational
