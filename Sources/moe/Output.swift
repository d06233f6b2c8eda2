import Foundation

/// Writes a line to stdout unbuffered, so progress appears as it happens, also through a pipe or a file
/// (print() is block-buffered there), and in order with everything else written this way.
func say(_ line: String = "") {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Writes a line to stderr unbuffered (warnings that must not mix into the output).
func warn(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
