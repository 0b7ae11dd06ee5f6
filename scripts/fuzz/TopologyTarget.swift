// libFuzzer target over the topology parser: `Topology.parse(yaml:source:)` then `validate()`, as `attnres run
// FILE` does. Any input must give a topology or a `TopologyError` naming the file; nothing traps. Seeds: the
// repository's topologies/*.yaml. Linked like the control-message target.
import Cluster

@_cdecl("LLVMFuzzerTestOneInput")
public func topologyFuzzTarget(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeRawBufferPointer(start: data, count: size), as: UTF8.self)
    do {
        let (t, _) = try Topology.parse(yaml: text, source: "fuzz.yaml")
        try t.validate()
    } catch let e as TopologyError {
        guard e.file == "fuzz.yaml" else { fatalError("a TopologyError that does not name the file: \(e)") }
    } catch { fatalError("Topology.parse/validate threw a non-TopologyError: \(error)") }
    return 0
}
