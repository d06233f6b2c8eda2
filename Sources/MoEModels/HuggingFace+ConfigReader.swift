import Foundation

extension HuggingFace {
    /// The end-of-sequence ids of a generation_config.json (`eos_token_id`: one id, a list, or null for none).
    public static func endTokens(_ data: Data, path: String) throws -> Set<Int> {
        guard let o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw LoadError(description: "\(path): not a JSON object; fix or remove the file")
        }
        let j = ConfigReader(o, path: path)
        if j["eos_token_id"] is [Any] { return Set(try j.ints("eos_token_id") ?? []) }
        return Set(try j.optionalInt("eos_token_id", min: 0, nullable: true).map { [$0] } ?? [])
    }

    /// A config.json object read strictly: every value is checked for its JSON type (a boolean is not a number,
    /// a string is not a number, null is not a value unless the key allows it) and sizes for range, and an error
    /// names the file, the key, the value and the fix. Ranges that depend on other keys are `validate()`'s.
    public struct ConfigReader {
        public let path: String
        /// The object as JSONSerialization read it.
        public let json: [String: Any]
        /// The dotted prefix of a nested object's keys in messages ("rope_parameters.").
        let prefix: String

        public init(_ json: [String: Any], path: String, prefix: String = "") {
            self.json = json
            self.path = path
            self.prefix = prefix
        }

        /// Whether `key` is present with a value other than null.
        public func has(_ key: String) -> Bool { json[key] != nil && !(json[key] is NSNull) }

        public subscript(key: String) -> Any? { json[key] }

        func fail(_ key: String, _ value: Any?, _ problem: String, _ fix: String) -> LoadError {
            LoadError(description: "\(path): \"\(prefix + key)\" is \(Self.render(value)), \(problem); \(fix)")
        }

        /// A JSON value as the file spells it.
        static func render(_ v: Any?) -> String {
            switch v {
            case nil: return "missing"
            case is NSNull: return "null"
            case let s as String: return "\"\(s.prefix(40))\""
            case let n as NSNumber where isBoolean(n): return n.boolValue ? "true" : "false"
            case let n as NSNumber: return "\(n)"
            case is [Any]: return "a list"
            case is [String: Any]: return "an object"
            default: return "\(v!)"
            }
        }

        /// JSONSerialization hands booleans over as NSNumber too; they are the ones of type char.
        static func isBoolean(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }

        /// A JSON number that is an integer, nil for anything else (booleans, fractions, strings, out of Int's range).
        static func integer(_ v: Any?) -> Int? {
            guard let n = v as? NSNumber, !isBoolean(n), !(n is NSDecimalNumber) else { return nil }
            let d = n.doubleValue
            guard d.isFinite, d == d.rounded(), abs(d) < 9.2e18 else { return nil }
            return n.intValue
        }

        /// A finite JSON number, nil for anything else.
        static func number(_ v: Any?) -> Double? {
            guard let n = v as? NSNumber, !isBoolean(n), n.doubleValue.isFinite else { return nil }
            return n.doubleValue
        }

        /// A required integer of at least `min`.
        public func int(_ key: String, min: Int = 1) throws -> Int {
            guard json[key] != nil else {
                throw LoadError(description: "\(path): missing \"\(prefix + key)\"; the config is incomplete, add it or re-download config.json")
            }
            guard let v = try optionalInt(key, min: min, nullable: true) else { throw fail(key, json[key], "not an integer", "write a whole number") }
            return v
        }

        /// An integer of at least `min`, `fallback` when absent (or null, when `nullable`).
        public func int(_ key: String, default fallback: Int, min: Int = 1, nullable: Bool = false) throws -> Int {
            if json[key] == nil || (nullable && json[key] is NSNull) { return fallback }
            return try int(key, min: min)
        }

        /// Null where the key does not allow it: a value the file meant to give and lost.
        func null(_ key: String) -> LoadError {
            fail(key, NSNull(), "not a value this key takes", "write a value, or remove the key for the default")
        }

        /// An integer of at least `min`, nil when absent (or null, when `nullable`).
        public func optionalInt(_ key: String, min: Int = 1, nullable: Bool = false) throws -> Int? {
            guard let raw = json[key] else { return nil }
            if raw is NSNull { if nullable { return nil } else { throw null(key) } }
            guard let v = Self.integer(raw) else { throw fail(key, raw, "not an integer", "write a whole number") }
            guard v >= min else { throw fail(key, raw, "below \(min)", "use \(min) or more") }
            return v
        }

        /// A finite number, `fallback` when absent (or null, when `nullable`).
        public func double(_ key: String, default fallback: Double, nullable: Bool = false) throws -> Double {
            if json[key] == nil || (nullable && json[key] is NSNull) { return fallback }
            guard let v = Self.number(json[key]) else { throw fail(key, json[key], "not a finite number", "write a number such as \(fallback)") }
            return v
        }

        /// A finite number, nil when absent (or null, when `nullable`).
        public func optionalDouble(_ key: String, nullable: Bool = false) throws -> Double? {
            guard let raw = json[key] else { return nil }
            if raw is NSNull { if nullable { return nil } else { throw null(key) } }
            guard let v = Self.number(raw) else { throw fail(key, raw, "not a finite number", "write a number, or null") }
            return v
        }

        /// true or false, `fallback` when absent.
        public func bool(_ key: String, default fallback: Bool) throws -> Bool {
            guard let raw = json[key] else { return fallback }
            guard let n = raw as? NSNumber, Self.isBoolean(n) else { throw fail(key, raw, "not true or false", "write true or false") }
            return n.boolValue
        }

        /// A string, nil when absent.
        public func string(_ key: String) throws -> String? {
            guard let raw = json[key] else { return nil }
            guard let s = raw as? String else { throw fail(key, raw, "not a string", "write a quoted name") }
            return s
        }

        /// A nested object, nil when absent or null.
        public func object(_ key: String) throws -> ConfigReader? {
            guard let raw = json[key], !(raw is NSNull) else { return nil }
            guard let o = raw as? [String: Any] else { throw fail(key, raw, "not an object", "write an object {...}, or null") }
            return ConfigReader(o, path: path, prefix: prefix + key + ".")
        }

        /// A list of strings, nil when absent.
        public func strings(_ key: String) throws -> [String]? {
            guard let raw = json[key] else { return nil }
            guard let list = raw as? [Any], let s = list as? [String] else { throw fail(key, raw, "not a list of strings", "write a list such as [\"a\", \"b\"]") }
            return s
        }

        /// A list of integers of at least `min`, nil when absent.
        public func ints(_ key: String, min: Int = 0) throws -> [Int]? {
            guard let raw = json[key] else { return nil }
            guard let list = raw as? [Any] else { throw fail(key, raw, "not a list of integers", "write a list such as [0, 1]") }
            return try list.map { x in
                guard let v = Self.integer(x), v >= min else { throw fail(key, x, "inside a list of integers of at least \(min)", "fix the entry") }
                return v
            }
        }
    }
}
