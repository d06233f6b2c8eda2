/// A configuration or option value that cannot work: names the field, the value and what to do instead.
public struct ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    public let field: String
    public let value: String
    public let hint: String

    public init(_ field: String, _ value: Any, _ hint: String) {
        self.field = field
        self.value = "\(value)"
        self.hint = hint
    }

    public var description: String { "invalid \(field) = \(value): \(hint)" }

    /// Throws unless `condition` holds.
    public static func check(_ condition: Bool, _ field: String, _ value: Any, _ hint: String) throws(ConfigError) {
        if !condition { throw ConfigError(field, value, hint) }
    }
}
