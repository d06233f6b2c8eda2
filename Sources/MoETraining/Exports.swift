@_exported import MoE
