import Foundation
import Pipeline
import Yams

/// A device and its links, from a datasheet: what `attnres simulate --hardware FILE` turns analytical work into
/// seconds with. Files live in topologies/hardware/ with their sources.
///
///     name: h100-sxm-ndr400
///     source: "…"                       # where every number comes from
///     compute: {peak_tflops: 989, achieved: 0.45, memory_gbytes_per_s: 3350, kernel_overhead_us: 4}
///     link: {gbit_per_s: 400, latency_us: 2}
///     links: [{src: 0, dst: 1, gbit_per_s: 100, latency_us: 5}]   # optional per-link overrides
public struct HardwareProfile: Sendable, Equatable {
    public var name: String
    public var source: String
    /// Dense peak FLOP/s and the fraction of it the model's products reach.
    public var peakFlops: Double
    public var achieved: Double
    /// Memory bandwidth, bytes per second.
    public var memoryBandwidth: Double
    /// Fixed cost of one kernel call (launch on a GPU, loop set-up on a CPU), seconds.
    public var kernelOverhead: Double
    public var link: LinkCost
    public var overrides: [StepCosts.LinkID: LinkCost]

    /// The device as `ComputeCost`: every kind of action on the same device.
    public var compute: ComputeCosts {
        ComputeCosts(ComputeCost(secondsPerFlop: 1 / (peakFlops * achieved), secondsPerByte: 1 / memoryBandwidth,
                                 secondsPerKernel: kernelOverhead))
    }

    /// Loads and checks a profile; errors name the file, the key and its line.
    public static func load(path: String) throws -> HardwareProfile {
        let text: String
        do { text = try InputFile.text(path) } catch let e as InputFileError {
            throw TopologyError(file: path, key: "(file)", line: nil, problem: e.problem)
        }
        return try parse(yaml: text, source: path)
    }

    public static func parse(yaml: String, source: String) throws -> HardwareProfile {
        let root: Node?
        do { root = try Yams.compose(yaml: yaml) } catch {
            throw TopologyError(file: source, key: "(yaml)", line: nil, problem: "not valid YAML: \(error)")
        }
        guard let root, root.mapping != nil else {
            throw TopologyError(file: source, key: "(top level)", line: root?.mark?.line, problem: "must be a mapping of keys")
        }
        return try parse(root, parser: Parser(file: source), prefix: "", name: source)
    }

    /// Parses a profile's mapping `node`, wherever it sits: a profile file's top level (`prefix` ""), or a
    /// topology's inline `hardware:` key (`prefix` "hardware."), so every error names the key as the user wrote it,
    /// with its line. `name` is the profile's name when it sets none.
    static func parse(_ node: Node, parser p: Parser, prefix: String, name: String) throws -> HardwareProfile {
        let top = try p.mapping(node, prefix.isEmpty ? "(top level)" : String(prefix.dropLast()))
        var h = HardwareProfile(name: name, source: "", peakFlops: 0, achieved: 0, memoryBandwidth: 0, kernelOverhead: 0,
                                link: .free, overrides: [:])
        var seen: Set<String> = []
        func linkCost(_ node: Node, path: String, extra: [String] = [], _ body: (String, Node) throws -> Void = { _, _ in }) throws -> LinkCost {
            var l = LinkCost(latency: .nan, bandwidth: .nan)
            try p.each(try p.mapping(node, String(path.dropLast())), path: path, known: ["gbit_per_s", "latency_us"] + extra) { k, v in
                switch k {
                case "gbit_per_s": l.bandwidth = try p.positive(v, path + k, in: { $0 * 1e9 / 8 })
                case "latency_us": l.latency = try p.positive(v, path + k, allowZero: true, in: { $0 / 1e6 })
                default: try body(k, v)
                }
            }
            guard !l.bandwidth.isNaN else { throw p.bad(node, path + "gbit_per_s", "missing") }
            guard !l.latency.isNaN else { throw p.bad(node, path + "latency_us", "missing") }
            return l
        }
        try p.each(top, path: prefix, known: ["name", "source", "compute", "link", "links"]) { key, node in
            seen.insert(key)
            let key = prefix + key
            switch key.dropFirst(prefix.count) {
            case "name": h.name = try p.string(node, key)
            case "source": h.source = try p.string(node, key)
            case "compute":
                var got: Set<String> = []
                try p.each(try p.mapping(node, key), path: "\(key).", known: ["peak_tflops", "achieved", "memory_gbytes_per_s", "kernel_overhead_us"]) { k, v in
                    got.insert(k)
                    switch k {
                    case "peak_tflops": h.peakFlops = try p.positive(v, "\(key).\(k)", in: { $0 * 1e12 })
                    case "achieved":
                        h.achieved = try p.positive(v, "\(key).\(k)")
                        guard h.achieved <= 1 else { throw p.bad(v, "\(key).\(k)", "must be a fraction of the peak in (0, 1], got \(h.achieved)") }
                    case "memory_gbytes_per_s": h.memoryBandwidth = try p.positive(v, "\(key).\(k)", in: { $0 * 1e9 })
                    default: h.kernelOverhead = try p.positive(v, "\(key).\(k)", allowZero: true, in: { $0 / 1e6 })
                    }
                }
                for k in ["peak_tflops", "achieved", "memory_gbytes_per_s", "kernel_overhead_us"] where !got.contains(k) {
                    throw p.bad(node, "\(key).\(k)", "missing")
                }
            case "link": h.link = try linkCost(node, path: "\(key).")
            default:
                guard let list = node.sequence else { throw p.bad(node, key, "must be a list of {src, dst, gbit_per_s, latency_us}") }
                for (i, item) in list.enumerated() {
                    var src = -1, dst = -1
                    let path = "\(key)[\(i)]."
                    let l = try linkCost(item, path: path, extra: ["src", "dst"]) { k, v in
                        if k == "src" { src = try p.int(v, path + k, min: 0) } else { dst = try p.int(v, path + k, min: 0) }
                    }
                    guard src >= 0, dst >= 0 else { throw p.bad(item, path + (src < 0 ? "src" : "dst"), "missing") }
                    guard h.overrides.updateValue(l, forKey: StepCosts.LinkID(src: src, dst: dst)) == nil else {
                        throw p.bad(item, "\(key)[\(i)]", "link \(src)→\(dst) given twice")
                    }
                }
            }
        }
        for k in ["compute", "link"] where !seen.contains(k) { throw p.bad(node, prefix + k, "missing") }
        return h
    }

    /// Checks every per-link override names a link of `layout` (rank r to r ± 1 mod P).
    public func checkLinks(_ layout: Layout, file: String, key: String = "links") throws {
        for id in overrides.keys.sorted() {
            let p = layout.ranks
            guard id.src < p, id.dst < p, id.dst == (id.src + 1) % p || id.dst == (id.src + p - 1) % p else {
                throw TopologyError(file: file, key: key, line: nil,
                                    problem: "link \(id.src)→\(id.dst) is not a link of this pipeline (\(p) ranks: r → r ± 1 mod \(p))")
            }
        }
    }
}

extension Parser {
    /// A finite number > 0 (≥ 0 with `allowZero`), converted `in` base units (FLOP/s, bytes/s, seconds). The converted value
    /// must be finite and > 0 too: `peak_tflops: 1e300` is finite as written but infinite in FLOP/s, and an infinite cost
    /// cannot be priced nor encoded in the `run` message's JSON.
    func positive(_ node: Node, _ key: String, allowZero: Bool = false, in unit: (Double) -> Double = { $0 }) throws -> Double {
        guard let s = node.scalar?.string, let v = Double(s), v.isFinite else {
            throw bad(node, key, "must be a number, got \(node.scalar.map { "'\($0.string)'" } ?? "a \(node.kindName)")")
        }
        guard allowZero ? v >= 0 : v > 0 else { throw bad(node, key, "must be \(allowZero ? "≥ 0" : "> 0"), got \(v)") }
        let scaled = unit(v)
        guard scaled.isFinite, allowZero || scaled > 0 else { throw bad(node, key, "\(v) is out of range (\(scaled) in base units)") }
        return scaled
    }
}
