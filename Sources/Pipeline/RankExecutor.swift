import Model

/// Carries out one rank's action list (`Schedule`) for a step against a `ChunkBackend` and a `HopChannel`: the
/// pure core of a pipeline rank (the SWIM pattern of STYLE.md). The worker process is a thin shell around it
/// (sockets, liveness, faults); tests run every rank's executor in one process over an in-memory channel.
///
/// The executor owns what both modes share: which tensors a hop carries (`HopPlan`), assembling a chunk's input
/// from the wire and the cross-stage cache, storing what later chunks of the rank read, routing backward
/// gradients to the wire or into cache deposits, and after every action checking the cache against the ledger
/// the traffic model predicts it with.
public struct RankExecutor<Backend: ChunkBackend> {
    public typealias Value = Backend.Value

    public let rank: Int
    public let plan: HopPlan
    public let schedule: Schedule
    public var backend: Backend
    public private(set) var cache = CrossStageCache<Value>()
    /// 0-based step being run.
    public private(set) var step = 0

    private var actions: [Action] { schedule.actions[rank] }
    private var next = 0
    private var ledger = CrossStageCacheLedger()
    /// For each block this rank caches, the chunk that brings it onto the rank (and so collects its deposits).
    private let owner: [Int: Int]
    /// Messages received by a receive action, waiting for their compute action.
    private var received: [HopKey: [Value]] = [:]
    /// Outputs (forward) and input gradients (backward) of a compute action, waiting for their send action.
    private var outbox: [HopKey: [Value]] = [:]

    /// The result of one call of `perform`.
    public enum Progress: Equatable {
        /// The action was carried out.
        case performed(Action)
        /// The next action waits for a message that has not arrived.
        case waiting(HopKey)
        /// Every action of the step is done.
        case stepDone
    }

    /// Whether errors carry the schedule's grid (built by simulating the schedule, itself run by executors).
    private let explainsFailures: Bool

    public init(rank: Int, plan: HopPlan, schedule: Schedule, backend: Backend, explainsFailures: Bool = true) {
        precondition(schedule.layout == plan.layout, "schedule and hop plan of different layouts")
        self.rank = rank
        self.plan = plan
        self.schedule = schedule
        self.backend = backend
        self.explainsFailures = explainsFailures
        var owner: [Int: Int] = [:]
        for c in plan.layout.chunks(onRank: rank) { for n in plan.cachedBlocks(byChunk: c) where owner[n] == nil { owner[n] = c } }
        self.owner = owner
    }

    /// Starts step `step` (0-based) from the first action.
    public mutating func begin(step: Int) {
        self.step = step
        next = 0
    }

    /// Whether every action of the current step has been carried out.
    public var isStepDone: Bool { next == actions.count }

    /// The action `perform` will carry out next (nil once the step is done).
    public var nextAction: Action? { next < actions.count ? actions[next] : nil }

    /// Carries out the next action, or says which message it waits for.
    public mutating func perform<C: HopChannel>(_ channel: inout C) throws -> Progress where C.Value == Value {
        guard next < actions.count else { return .stepDone }
        let a = actions[next]
        do {
            if try !carryOut(a, &channel) { return .waiting(a.message!) }
            ledger.apply(a, plan: plan)
            // Only a forward or a backward changes the cache or the ledger, and only for its own microbatch, so the
            // check after every action needs that one microbatch: every other one still matches from the actions
            // before (both start a step empty, `checkDrained`). Checking every microbatch in flight after every action built
            // sets for each and showed in a profile of the cross-stage cache's executor time.
            if a.isCompute {
                let m = a.microbatch
                let held = cache.heldBlocks(microbatch: m), expected = ledger.entries[m] ?? []
                guard held == expected else {
                    throw Violation(.cacheMatchesLedger(held: held.sorted(), ledger: expected.sorted(), microbatch: m))
                }
            }
        } catch let v as Violation {
            throw failure(a, .invariant(v.invariant))
        } catch let e as ExecutorError {
            throw e
        } catch {
            throw failure(a, .failure(error))
        }
        next += 1
        if next == actions.count { try checkDrained() }
        return .performed(a)
    }

    /// Carries out actions until one waits for a message (returns `.waiting`) or the step is done (`.stepDone`).
    public mutating func advance<C: HopChannel>(_ channel: inout C) throws -> Progress where C.Value == Value {
        while true {
            switch try perform(&channel) {
            case .performed: continue
            case let other: return other
            }
        }
    }

    /// An error at `action` (nil: end of step) with the grid marked there.
    public func failure(_ action: Action?, _ cause: ExecutorError.Cause) -> ExecutorError {
        ExecutorError(rank: rank, step: step, action: action, cause: cause,
                      grid: explainsFailures ? ExecutorError.grid(schedule, rank: rank, action: action) : "")
    }

    // MARK: actions

    private struct Violation: Error {
        let invariant: ExecutorError.Invariant
        init(_ i: ExecutorError.Invariant) { invariant = i }
    }

    private var layout: Layout { plan.layout }

    /// Returns false when a receive's message has not arrived (nothing changed).
    private mutating func carryOut<C: HopChannel>(_ a: Action, _ channel: inout C) throws -> Bool where C.Value == Value {
        switch a {
        case .recvForward, .recvBackward:
            let k = a.message!
            guard let values = try channel.receive(k, roles: plan.tensors[k.hop]) else { return false }
            guard received.updateValue(values, forKey: k) == nil else { throw Violation(.messageOnce("\(k) received twice")) }
        case .sendForward, .sendBackward:
            let k = a.message!
            guard let values = outbox.removeValue(forKey: k) else { throw Violation(.messageOnce("\(k) has nothing to send")) }
            try channel.send(k, roles: plan.tensors[k.hop], values: values)
        case .forward(let c, let m): try forward(chunk: c, microbatch: m)
        case .backward(let c, let m): try backward(chunk: c, microbatch: m)
        }
        return true
    }

    private mutating func forward(chunk c: Int, microbatch m: Int) throws {
        var input: HopValues<Value>?
        if c > 0 {
            let k = HopKey(direction: .forward, hop: c - 1, microbatch: m)
            guard let wire = received.removeValue(forKey: k) else { throw Violation(.messageOnce("\(k) was never received")) }
            let shipped = Dictionary(uniqueKeysWithValues: zip(plan.tensors[c - 1], wire))
            let roles = plan.inputRoles(ofChunk: c)
            input = HopValues(roles: roles, values: try roles.map { role in
                if let v = shipped[role] { return v }
                if case .block(let n) = role, let v = cache.read(microbatch: m, block: n) { return v }
                throw Violation(.inputAvailable(role, microbatch: m))
            })
        }
        let output = try backend.forward(chunk: c, microbatch: m, input: input)
        for n in plan.cachedBlocks(byChunk: c) {
            guard let v = output?[.block(n)] ?? input?[.block(n)] else { throw Violation(.cachedBlockAvailable(block: n, microbatch: m)) }
            cache.store(microbatch: m, block: n, v, bytes: backend.byteCount(v))
        }
        guard c < layout.chunks - 1 else { return }
        outbox[HopKey(direction: .forward, hop: c, microbatch: m)] = try plan.tensors[c].map { role in
            guard let v = output?[role] else { throw Violation(.backendProduced(role, microbatch: m)) }
            return v
        }
    }

    private mutating func backward(chunk c: Int, microbatch m: Int) throws {
        var gradOutput: HopValues<Value>?
        if c < layout.chunks - 1 {
            let k = HopKey(direction: .backward, hop: c, microbatch: m)
            guard let wire = received.removeValue(forKey: k) else { throw Violation(.messageOnce("\(k) was never received")) }
            let shipped = Dictionary(uniqueKeysWithValues: zip(plan.tensors[c], wire))
            let roles = plan.outputRoles(ofChunk: c)
            var values = roles.map { shipped[$0] ?? backend.zeroGradient($0, microbatch: m, hop: c) }
            // This chunk brought these blocks onto the rank: add what later chunks of the rank deposited.
            for (i, role) in roles.enumerated() {
                guard case .block(let n) = role, owner[n] == c, let sum = cache.collect(microbatch: m, block: n) else { continue }
                try backend.accumulate(&values[i], sum, role: role, microbatch: m)
            }
            gradOutput = HopValues(roles: roles, values: values)
        }
        let gradInput = try backend.backward(chunk: c, microbatch: m, gradOutput: gradOutput)
        if c > 0 {
            let wire = Set(plan.tensors[c - 1])
            for role in plan.inputRoles(ofChunk: c) where !wire.contains(role) {
                guard case .block(let n) = role, let g = gradInput?[role] else { throw Violation(.backendProduced(role, microbatch: m)) }
                guard owner[n] != nil else { throw Violation(.depositHasOwner(block: n, microbatch: m)) }
                try cache.deposit(microbatch: m, block: n, g) { try backend.accumulate(&$0, $1, role: role, microbatch: m) }
            }
            outbox[HopKey(direction: .backward, hop: c - 1, microbatch: m)] = try plan.tensors[c - 1].map { role in
                guard let g = gradInput?[role] else { throw Violation(.backendProduced(role, microbatch: m)) }
                return g
            }
        }
        if layout.virtualStage(ofChunk: c) == 0 {
            let left = cache.openSlots(microbatch: m)
            guard left.isEmpty else { throw Violation(.depositsCollected(blocks: left, microbatch: m)) }
            cache.free(microbatch: m)
        }
    }

    private func checkDrained() throws {
        var left: [String] = []
        if !received.isEmpty { left.append("unused messages " + received.keys.map(\.description).sorted().joined(separator: ", ")) }
        if !outbox.isEmpty { left.append("unsent messages " + outbox.keys.map(\.description).sorted().joined(separator: ", ")) }
        if !cache.isEmpty { left.append("cache entries for microbatches \(cache.microbatches)") }
        if ledger.currentEntries != 0 { left.append("ledger entries for microbatches \(ledger.entries.keys.sorted())") }
        guard left.isEmpty else { throw failure(nil, .invariant(.stepDrained(left.joined(separator: "; ")))) }
    }
}
