// libFuzzer target over the control-message decoder, `ControlFrame.decode` applied to `ToWorker` and
// `FromWorker`. One input is one control frame (prefix + JSON body); any property of
// Tests/ClusterTests/ControlFrameContract.swift (compiled in with this file) that fails is a trap, a finding.

@_cdecl("LLVMFuzzerTestOneInput")
public func controlMessageFuzzTarget(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let violations = ControlFrameContract.violations(Array(UnsafeRawBufferPointer(start: data, count: size)))
    if !violations.isEmpty { fatalError(violations.joined(separator: "; ")) }
    return 0
}
