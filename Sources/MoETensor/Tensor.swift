import Foundation

/// Reference-counted, 64-byte aligned element buffer shared by a tensor and its views.
public final class TensorStorage<T: TensorScalar>: @unchecked Sendable {
    public let base: UnsafeMutablePointer<T>
    public let capacity: Int

    /// Uninitialized storage; callers fill every element before reading.
    public init(capacity: Int) {
        self.capacity = capacity
        let bytes = BlockCache.sizeClass(Swift.max(1, capacity) * MemoryLayout<T>.stride)
        let raw = BlockCache.shared.take(bytes) ?? UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        base = raw.bindMemory(to: T.self, capacity: Swift.max(1, capacity))
    }

    deinit {
        let raw = UnsafeMutableRawPointer(base)
        if !BlockCache.shared.give(raw, bytes: BlockCache.sizeClass(Swift.max(1, capacity) * MemoryLayout<T>.stride)) { raw.deallocate() }
    }

    /// Frees the blocks kept for reuse (before measuring a program's own peak memory, or when done with a
    /// phase whose shapes will not come back).
    public static func releaseCachedBlocks() { BlockCache.shared.releaseAll() }
}

/// Keeps freed large blocks for reuse by the next tensor of the same byte size.
///
/// The C allocator hands out large blocks as fresh pages and returns them to the kernel on free, so every
/// large tensor would pay a page fault per 4 KiB on first touch (measured: +8-10% on a 2048^3 matmul through
/// the tensor API, and most of an elementwise op's time). Training and inference loops allocate the same
/// shapes step after step, so an exact-size cache removes nearly all of it, as framework caching
/// allocators do. Blocks under 1 MiB go straight to malloc. Sizes are rounded up to one of 8 classes per
/// power of two (at most 12.5% more), so tensors whose shapes vary a little (an expert's block of tokens)
/// share blocks instead of each size keeping its own. The cache holds at most `limit` bytes (MOE_CACHE_MB
/// overrides; 0 disables it).
final class BlockCache: @unchecked Sendable {
    static let shared = BlockCache()
    static let minimumBytes = 1 << 20

    private let lock = NSLock()
    private var free: [Int: [UnsafeMutableRawPointer]] = [:]
    private var cached = 0
    let limit: Int

    init() {
        let env = ProcessInfo.processInfo.environment["MOE_CACHE_MB"].flatMap { Int($0) }
        let physical = Int(clamping: ProcessInfo.processInfo.physicalMemory)
        limit = env.map { $0 << 20 } ?? min(4 << 30, physical / 4)
    }

    /// `bytes` rounded up to its size class (unchanged below `minimumBytes`).
    @inline(__always)
    static func sizeClass(_ bytes: Int) -> Int {
        guard bytes >= minimumBytes else { return bytes }
        let step = 1 << (Int.bitWidth - bytes.leadingZeroBitCount - 1 - 3)  // an eighth of the power of two below
        return (bytes + step - 1) / step * step
    }

    func releaseAll() {
        lock.lock()
        let blocks = free.values.flatMap { $0 }
        free = [:]
        cached = 0
        lock.unlock()
        for p in blocks { p.deallocate() }
    }

    func take(_ bytes: Int) -> UnsafeMutableRawPointer? {
        guard bytes >= Self.minimumBytes else { return nil }
        lock.lock()
        defer { lock.unlock() }
        guard let p = free[bytes]?.popLast() else { return nil }
        cached -= bytes
        return p
    }

    /// Keeps the block if there is room; false means the caller frees it.
    func give(_ p: UnsafeMutableRawPointer, bytes: Int) -> Bool {
        guard bytes >= Self.minimumBytes else { return false }
        lock.lock()
        defer { lock.unlock() }
        guard cached + bytes <= limit else { return false }
        free[bytes, default: []].append(p)
        cached += bytes
        return true
    }
}

/// A dense, row-major, contiguous n-dimensional array of `Float` or `Double`.
///
/// A tensor is a value: copies share storage until one of them is written (copy-on-write). Reshapes and
/// row slices are views into the same storage. This type has no notion of gradients; see MoEAutograd.
public struct Tensor<T: TensorScalar>: @unchecked Sendable {
    public private(set) var storage: TensorStorage<T>
    /// Element offset of this tensor's first element inside `storage`.
    public private(set) var offset: Int
    public private(set) var shape: [Int]

    /// Wraps existing storage; `offset + count` must lie inside it.
    public init(storage: TensorStorage<T>, offset: Int = 0, shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "[tensor] negative dimension in shape \(Shape.describe(shape))")
        precondition(
            offset >= 0 && offset + Shape.count(shape) <= storage.capacity,
            "[tensor] view \(Shape.describe(shape)) at offset \(offset) exceeds storage of \(storage.capacity)")
        self.storage = storage
        self.offset = offset
        self.shape = shape
    }

    /// An uninitialized tensor, for kernels that write every element.
    public init(uninitializedShape shape: [Int]) {
        self.init(storage: TensorStorage(capacity: Shape.count(shape)), shape: shape)
    }

    public init(shape: [Int], repeating value: T) {
        self.init(uninitializedShape: shape)
        storage.base.initialize(repeating: value, count: count)
    }

    public static func zeros(_ shape: [Int]) -> Tensor { Tensor(shape: shape, repeating: 0) }
    public static func ones(_ shape: [Int]) -> Tensor { Tensor(shape: shape, repeating: 1) }

    /// A scalar (rank-0) tensor.
    public init(_ value: T) { self.init(shape: [], repeating: value) }

    public init(shape: [Int], _ scalars: [T]) {
        precondition(
            scalars.count == Shape.count(shape),
            "[tensor] \(scalars.count) scalars do not fill shape \(Shape.describe(shape)) of \(Shape.count(shape))")
        self.init(uninitializedShape: shape)
        scalars.withUnsafeBufferPointer { storage.base.update(from: $0.baseAddress!, count: scalars.count) }
    }

    /// Converts between element types (Float <-> Double).
    public init<U: TensorScalar>(converting other: Tensor<U>) {
        self.init(uninitializedShape: other.shape)
        let dst = storage.base
        other.withUnsafePointer { src in
            for i in 0..<other.count { dst[i] = T(src[i]) }
        }
    }

    public var count: Int { Shape.count(shape) }
    public var rank: Int { shape.count }
    public var scalars: [T] { withUnsafeBufferPointer { Array($0) } }

    /// The only element of a one-element tensor.
    public var item: T {
        precondition(count == 1, "[item] tensor of shape \(Shape.describe(shape)) has \(count) elements, not 1")
        return storage.base[offset]
    }

    @inline(__always)
    public func withUnsafePointer<R>(_ body: (UnsafePointer<T>) throws -> R) rethrows -> R {
        try body(UnsafePointer(storage.base + offset))
    }

    @inline(__always)
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<T>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: storage.base + offset, count: count))
    }

    /// Mutable access; copies the elements first if the storage is shared with another tensor.
    @inline(__always)
    public mutating func withUnsafeMutablePointer<R>(_ body: (UnsafeMutablePointer<T>) throws -> R) rethrows -> R {
        makeUnique()
        return try body(storage.base + offset)
    }

    @inline(__always)
    public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (UnsafeMutableBufferPointer<T>) throws -> R
    ) rethrows -> R {
        makeUnique()
        return try body(UnsafeMutableBufferPointer(start: storage.base + offset, count: count))
    }

    /// Whether this tensor is the only owner of its storage (so it may be written in place).
    public mutating func isUniquelyOwned() -> Bool { isKnownUniquelyReferenced(&storage) }

    public mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) {
            let copy = TensorStorage<T>(capacity: count)
            copy.base.update(from: storage.base + offset, count: count)
            storage = copy
            offset = 0
        }
    }

    /// A fresh tensor with its own storage.
    public func copy() -> Tensor {
        var out = Tensor(uninitializedShape: shape)
        out.storage.base.update(from: storage.base + offset, count: count)
        out.offset = 0
        return out
    }

    /// Element access by multi-index (slow; for tests and small code paths).
    public subscript(_ index: Int...) -> T {
        get { storage.base[offset + Shape.flatIndex(index, shape)] }
        set {
            makeUnique()
            storage.base[offset + Shape.flatIndex(index, shape)] = newValue
        }
    }

    // MARK: Views

    /// The same elements with a new shape (a view; no copy). One dimension may be -1.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(storage: storage, offset: offset, shape: Shape.resolve(newShape, count: count, op: "reshape"))
    }

    /// Rows `range` of the first axis (a view; no copy).
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 1, "[rows] needs rank >= 1, got shape \(Shape.describe(shape))")
        precondition(
            range.lowerBound >= 0 && range.upperBound <= shape[0],
            "[rows] range \(range) out of bounds for shape \(Shape.describe(shape))")
        let rowSize = shape.count > 1 ? Shape.count(Array(shape[1...])) : 1
        var s = shape
        s[0] = range.count
        return Tensor(storage: storage, offset: offset + range.lowerBound * rowSize, shape: s)
    }

    /// Row `i` of the first axis, without that axis (a view).
    public func row(_ i: Int) -> Tensor {
        rows(i..<(i + 1)).reshaped(Array(shape.dropFirst()))
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let values = count <= 16 ? scalars.map { "\($0)" }.joined(separator: ", ") : "\(count) elements"
        return "Tensor<\(T.self)>\(Shape.describe(shape)) [\(values)]"
    }
}

extension Tensor: Equatable {
    /// Same shape and bit-identical elements.
    public static func == (lhs: Tensor, rhs: Tensor) -> Bool {
        lhs.shape == rhs.shape && lhs.scalars == rhs.scalars
    }
}
