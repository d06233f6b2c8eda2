@_exported import MoEModels
