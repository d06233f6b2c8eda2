import Foundation
import MoETestSupport
import Testing

@Suite("moe command line")
struct CLITests {
    @Test func classicEndToEnd() throws {
        let dir = TestSupport.temporaryDirectory()
        let plot = dir.appendingPathComponent("plot.svg").path
        let r = try TestSupport.runMoE(["classic", "--steps", "300", "--plot", plot])
        #expect(r.status == 0, "\(r.err)")
        let lines = r.out.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines[0] == "Mixture of local experts (Jacobs et al. 1991) on Peterson & Barney (1952) vowels")
        #expect(lines[1].hasPrefix("data: 1520 training tokens, 1520 test tokens from new speakers; 4 linear experts; seed 1"))
        for title in ["== competitive loss ==", "== cooperative loss =="] {
            let i = try #require(lines.firstIndex(of: title))
            #expect(lines[i + 1].hasPrefix("final training loss "))
            #expect(lines[i + 1].contains("test accuracy "))
            #expect(lines[i + 2].hasPrefix("top-gated expert alone: test accuracy "))
            #expect(lines[i + 3].hasPrefix("localization: mean max gate "))
            #expect(lines[i + 4].hasPrefix("inputs won per expert: E0 "))
            #expect(lines[i + 5] == "winning expert (mean gate share) per vowel and speaker group:")
            #expect(lines[i + 6].split(separator: " ", omittingEmptySubsequences: true) == ["vowel", "men", "women", "children"])
            for v in 0..<10 {
                let cells = lines[i + 7 + v].split(separator: " ", omittingEmptySubsequences: true)
                #expect(cells.count == 8, "\(lines[i + 7 + v])")  // vowel, word, then 3 x (expert, share)
                #expect(cells[2].hasPrefix("E") && cells[3].hasSuffix("%"))
            }
        }
        #expect(lines.contains("plot written to \(plot)"))
        let svg = try String(contentsOfFile: plot, encoding: .utf8)
        #expect(svg.hasPrefix("<svg"))
        #expect(svg.contains("competitive loss"))
        #expect(svg.components(separatedBy: "<circle").count > 2 * 1520)
    }

    @Test func jsonOutputIsOneObject() throws {
        let dir = TestSupport.temporaryDirectory()
        let r = try TestSupport.runMoE(["classic", "--steps", "20", "--loss", "competitive", "--json", "--plot", dir.appendingPathComponent("p.svg").path])
        #expect(r.status == 0)
        let obj = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]
        let results = try #require(obj?["results"] as? [[String: Any]])
        #expect(results.count == 1)
        #expect(results[0]["loss"] as? String == "competitive")
        #expect((results[0]["winners"] as? [Any])?.count == 30)
    }

    @Test(arguments: [
        (["classic", "--experts", "0"], "Error: invalid experts = 0: use between 1 and 64 experts"),
        (["classic", "--steps", "0"], "Error: invalid steps = 0: use between 1 and 1000000 steps"),
        (["classic", "--lr", "0"], "Error: invalid learning rate = 0.0: use a positive learning rate such as 0.02"),
        (["classic", "--loss", "mixed"], "Error: invalid --loss mixed: use both, competitive or cooperative"),
        (["classic", "--steps", "1", "--plot", "/nonexistent-dir/x.svg"],
         "Error: cannot write /nonexistent-dir/x.svg: directory /nonexistent-dir does not exist; create it or choose another path"),
    ])
    func badOptionsGiveOneLineErrors(_ args: [String], _ message: String) throws {
        let r = try TestSupport.runMoE(args)
        #expect(r.status != 0)
        #expect(r.err.trimmingCharacters(in: .whitespacesAndNewlines) == message)
        #expect(r.out.isEmpty)
    }
}
