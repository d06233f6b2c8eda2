import Foundation
import MoEInference
import MoEModels
import MoETestSupport
import Testing

/// How decode splits a pass over the cores (MatVec's pieces) and prepares the KV cache's pages.
@Suite struct DecodeScheduleTests {
    /// Pieces cover the pass once, in order; they shrink as the pass goes; none is under the smallest piece but
    /// the last; a short pass is one piece; the equal split (for comparisons) has 2 to 8 pieces a core.
    @Test(arguments: [(1, 4 << 20), (2, 4 << 20), (64, 4 << 20), (64, 200 << 10), (2048, 46 << 20), (2000, 131 << 20), (176, 11 << 20), (5, 300 << 10)],
          [1, 2, 4])
    func piecesCoverThePassAndShrink(_ pass: (units: Int, bytes: Int), cores: Int) {
        let b = MatVec.pieces(units: pass.units, bytes: pass.bytes, cores: cores, equal: false)
        #expect(b.first == 0 && b.last == pass.units)
        #expect(zip(b, b.dropFirst()).allSatisfy { $0 < $1 }, "\(b)")
        if pass.bytes < MatVec.minimumPass || cores == 1 || pass.units == 1 {
            #expect(b == [0, pass.units])
            return
        }
        let sizes = zip(b.dropFirst(), b).map { $0 - $1 }
        #expect(sizes.count >= 2, "\(sizes)")
        #expect(zip(sizes, sizes.dropFirst()).allSatisfy { $0 >= $1 }, "sizes grow: \(sizes)")
        #expect(sizes[0] <= (pass.units + 2 * cores - 1) / (2 * cores))
        let least = Swift.max(1, MatVec.minimumPiece * pass.units / pass.bytes)
        #expect(sizes.dropLast().allSatisfy { $0 >= least }, "\(sizes), least \(least)")

        let e = MatVec.pieces(units: pass.units, bytes: pass.bytes, cores: cores, equal: true)
        #expect(e.first == 0 && e.last == pass.units && zip(e, e.dropFirst()).allSatisfy { $0 < $1 })
        #expect(e.count - 1 == Swift.min(pass.units, cores * 8, Swift.max(2, pass.bytes / MatVec.minimumPass)))
    }

    /// A model whose decode passes are long enough to be cut into pieces (the fixtures' are not): token-by-token
    /// decode gives prefill's logits (sgemm, no pieces), in an f32 and in an f16 cache, twice over one session
    /// (the cache's pages populated ahead once, then rewritten after `reset`). A row skipped at a piece's edge
    /// would be left uninitialized.
    @Test func decodeCutInPiecesMatchesPrefill() throws {
        var c = DefaultModel.config(dim: 128, layers: 2, heads: 4, kvHeads: 2, experts: 4, topK: 2, expertHidden: 512)
        c.vocabSize = 1024
        let dir = TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try HuggingFace.export(try MoETransformer<Float>(c, seed: 11), to: dir.path)
        let engine = try InferenceModel(directory: dir.path)
        // The head and the experts' gate and up passes are cut; each expert's down is at least 256 KB too.
        #expect(MatVec.pieces(units: 1024 / 16, bytes: 1024 * 128 * 4, cores: 2, equal: false).count > 3)
        #expect(MatVec.pieces(units: 4 * 512 / 16, bytes: 4 * 512 * 128 * 4, cores: 2, equal: false).count > 3)
        let ids = (0..<40).map { ($0 * 37 + 5) % 1024 }
        for cache in [InferenceSession.KVCache.f32, .f16] {
            let want = InferenceSession(model: engine, capacity: ids.count, prefill: .f32, kvCache: cache).forward(ids, allLogits: true)
            let scale = want.scalars.map { abs($0) }.max()!
            let s = InferenceSession(model: engine, capacity: ids.count, kvCache: cache)
            for round in 0..<2 {
                s.reset()
                var worst: Float = 0
                for (p, id) in ids.enumerated() {
                    let got = s.forward([id]).scalars, row = want.rows(p..<(p + 1)).scalars
                    #expect(!got.contains { $0.isNaN }, "\(cache) round \(round) position \(p)")
                    worst = max(worst, zip(got, row).map { abs($0 - $1) }.max()!)
                }
                #expect(worst < 1e-4 * scale, "\(cache) round \(round): \(worst) of logit scale \(scale)")
            }
        }
    }

    /// The fallback for kernels without MADV_POPULATE_WRITE writes a 0 to the first byte of the range in each page
    /// and nothing else; the populating advice leaves the bytes as they were.
    @Test func populatingTheCacheChangesNothingBeforeItsEnd() {
        let page = Pages.pageSize
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: 6 * page, alignment: 64)
        defer { pointer.deallocate() }
        let bytes = pointer.assumingMemoryBound(to: UInt8.self)
        bytes.initialize(repeating: 0xAB, count: 6 * page)
        let start = page + 100, count = 3 * page
        Pages.touchPages(pointer + start, count)
        var zeros: [Int] = []
        for i in 0..<(6 * page) where bytes[i] != 0xAB { zeros.append(i) }
        let pageStart = (Int(bitPattern: pointer) / page + 1) * page - Int(bitPattern: pointer)
        let expected = [start] + stride(from: pageStart, to: start + count, by: page).filter { $0 > start }
        #expect(zeros == expected.filter { $0 < start + count }, "\(zeros) against \(expected)")
        #expect(zeros.allSatisfy { bytes[$0] == 0 })

        bytes.initialize(repeating: 0xCD, count: 6 * page)
        Pages.populate(pointer + start, count)
        #expect((0..<(6 * page)).allSatisfy { bytes[$0] == 0xCD })
    }
}
