import Pipeline

/// A hardware profile as the `run` message's topology and a trace's `otherData.topology` carry it (the topology's
/// `hardware:` key, resolved): the profile file's own keys and units, so the JSON reads like the YAML. Each unit is
/// converted the same way as the YAML is parsed (× 1e12, × 1e9, × 1e9 / 8, / 1e6) and back, so a profile survives
/// the round trip bit for bit for the values profiles hold.
///
///     {"name", "source",
///      "compute": {"peak_tflops", "achieved", "memory_gbytes_per_s", "kernel_overhead_us"},
///      "link": {"gbit_per_s", "latency_us"},
///      "links": [{"src", "dst", "gbit_per_s", "latency_us"}]}      // links optional
extension HardwareProfile: Codable {
    enum WireKey: String, CodingKey { case name, source, compute, link, links }
    enum ComputeKey: String, CodingKey {
        case peakTflops = "peak_tflops", achieved, memoryGbytesPerS = "memory_gbytes_per_s", kernelOverheadUs = "kernel_overhead_us"
    }
    enum LinkKey: String, CodingKey { case src, dst, gbitPerS = "gbit_per_s", latencyUs = "latency_us" }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        let k = try c.nestedContainer(keyedBy: ComputeKey.self, forKey: .compute)
        func link(_ l: KeyedDecodingContainer<LinkKey>) throws -> LinkCost {
            LinkCost(latency: try l.decode(Double.self, forKey: .latencyUs) / 1e6, bandwidth: try l.decode(Double.self, forKey: .gbitPerS) * 1e9 / 8)
        }
        var overrides: [StepCosts.LinkID: LinkCost] = [:]
        if var list = try? c.nestedUnkeyedContainer(forKey: .links) {
            while !list.isAtEnd {
                let l = try list.nestedContainer(keyedBy: LinkKey.self)
                overrides[StepCosts.LinkID(src: try l.decode(Int.self, forKey: .src), dst: try l.decode(Int.self, forKey: .dst))] = try link(l)
            }
        }
        self.init(name: try c.decode(String.self, forKey: .name), source: try c.decodeIfPresent(String.self, forKey: .source) ?? "",
                  peakFlops: try k.decode(Double.self, forKey: .peakTflops) * 1e12, achieved: try k.decode(Double.self, forKey: .achieved),
                  memoryBandwidth: try k.decode(Double.self, forKey: .memoryGbytesPerS) * 1e9,
                  kernelOverhead: try k.decode(Double.self, forKey: .kernelOverheadUs) / 1e6,
                  link: try link(try c.nestedContainer(keyedBy: LinkKey.self, forKey: .link)), overrides: overrides)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: WireKey.self)
        try c.encode(name, forKey: .name)
        try c.encode(source, forKey: .source)
        var k = c.nestedContainer(keyedBy: ComputeKey.self, forKey: .compute)
        try k.encode(peakFlops / 1e12, forKey: .peakTflops); try k.encode(achieved, forKey: .achieved)
        try k.encode(memoryBandwidth / 1e9, forKey: .memoryGbytesPerS); try k.encode(kernelOverhead * 1e6, forKey: .kernelOverheadUs)
        func encode(_ l: LinkCost, into e: inout KeyedEncodingContainer<LinkKey>) throws {
            try e.encode(l.bandwidth * 8 / 1e9, forKey: .gbitPerS); try e.encode(l.latency * 1e6, forKey: .latencyUs)
        }
        var l = c.nestedContainer(keyedBy: LinkKey.self, forKey: .link)
        try encode(link, into: &l)
        guard !overrides.isEmpty else { return }
        var list = c.nestedUnkeyedContainer(forKey: .links)
        for id in overrides.keys.sorted() {
            var e = list.nestedContainer(keyedBy: LinkKey.self)
            try e.encode(id.src, forKey: .src); try e.encode(id.dst, forKey: .dst)
            try encode(overrides[id]!, into: &e)
        }
    }
}
