@_exported import MoEModels
@_exported import MoETokenizers
