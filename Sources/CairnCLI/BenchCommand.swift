// `cairn bench`: a load generator on one volume through the volume client, for comparing
// Cairn with a plain file under fio (see tools/bench/run.sh and docs/benchmarks.md).
//
// It keeps exactly `--queue-depth` requests in flight (a task-group sliding window), times
// every request on its own, and reports throughput and latency percentiles. Offsets are
// aligned to the block size; sequential patterns wrap around at the end of the range.
// Reads of chunks never written are answered by the client as zeroes without any I/O, so
// read patterns must run on a volume written beforehand (it warns when that is not so).
import ArgumentParser
import CairnClient
import CairnCore
import Foundation
import NIOCore

enum BenchPattern: String, CaseIterable {
    case seqwrite, seqread, randwrite, randread

    var writes: Bool { self == .seqwrite || self == .randwrite }
    var sequential: Bool { self == .seqwrite || self == .seqread }
}

/// What to run, validated from the command line.
struct BenchPlan {
    /// More in flight than this measures the client's queueing, not the storage.
    static let queueDepthMax = 256
    /// The data wire's largest I/O (`WireLimits.ioLengthMax`, a module the CLI does not
    /// depend on): one benchmark request stays one request per replica.
    static let blockSizeMax = 16 << 20
    /// A longer run is a soak test, not a benchmark.
    static let durationMax: Duration = .seconds(3600)

    var pattern: BenchPattern
    var blockBytes: Int
    var queueDepth: Int
    var duration: Duration
    var sizeLimit: UInt64?

    static func parse(pattern: String, blockSize: String, queueDepth: String, duration: String,
                      sizeLimit: String?) throws -> BenchPlan {
        guard let p = BenchPattern(rawValue: pattern) else {
            let names = BenchPattern.allCases.map(\.rawValue).joined(separator: ", ")
            throw CairnError.invalidArgument("--pattern '\(pattern)' is not one of \(names)")
        }
        let bytes = try ByteSize.parse(blockSize)
        guard bytes > 0, bytes % UInt64(CairnCore.blockSize) == 0, bytes <= UInt64(blockSizeMax) else {
            throw CairnError.invalidArgument(
                "--block-size \(blockSize) must be a multiple of 4 KiB, at most \(ByteSize.format(UInt64(blockSizeMax)))")
        }
        guard let depth = Int(queueDepth), (1...queueDepthMax).contains(depth) else {
            throw CairnError.invalidArgument("--queue-depth '\(queueDepth)' must be a whole number from 1 to \(queueDepthMax)")
        }
        let d = try parseDuration(duration)
        guard d > .zero, d <= durationMax else {
            throw CairnError.invalidArgument("--duration \(duration) must be above zero and at most 1h")
        }
        let limit = try sizeLimit.map { try ByteSize.parse($0) }
        return BenchPlan(pattern: p, blockBytes: Int(bytes), queueDepth: depth, duration: d, sizeLimit: limit)
    }

    /// The byte range the run touches: the volume, or its first `sizeLimit` bytes, rounded
    /// down to whole blocks of the benchmark.
    func rangeBytes(volumeSize: UInt64) throws -> UInt64 {
        let wanted = min(volumeSize, sizeLimit ?? volumeSize)
        let range = wanted - wanted % UInt64(blockBytes)
        guard range > 0 else {
            throw CairnError.invalidArgument(
                "the range to test (\(ByteSize.format(wanted))) is smaller than one block of \(ByteSize.format(UInt64(blockBytes)))")
        }
        return range
    }
}

/// Offsets of the run: sequential with wrap-around, or uniformly random block-aligned.
/// Seeded, so two runs with the same arguments touch the same offsets.
struct BenchOffsets {
    let blocks: UInt64
    let blockBytes: UInt64
    let sequential: Bool
    private var nextBlock: UInt64 = 0
    private var rng: SplitMix64

    init(rangeBytes: UInt64, blockBytes: Int, sequential: Bool, seed: UInt64) {
        self.blockBytes = UInt64(blockBytes)
        self.blocks = rangeBytes / UInt64(blockBytes)
        self.sequential = sequential
        self.rng = SplitMix64(seed: seed)
        precondition(blocks > 0, "a benchmark range holds at least one block")
    }

    mutating func next() -> UInt64 {
        let block: UInt64
        if sequential {
            block = nextBlock
            nextBlock = (nextBlock + 1) % blocks
        } else {
            block = rng.next() % blocks
        }
        return block * blockBytes
    }
}

/// Latencies in a log-linear histogram: fixed memory however long the run, and each
/// value lands in a bucket at most 1/`subBuckets` wide relative to it (under 1% error).
struct LatencyHistogram {
    static let subBucketBits = 7
    static let subBuckets = 1 << subBucketBits
    /// Enough magnitudes for any UInt64 nanosecond count.
    static let magnitudes = 64 - subBucketBits + 1
    private var counts = [UInt64](repeating: 0, count: magnitudes * subBuckets)
    private(set) var total: UInt64 = 0

    mutating func record(nanoseconds: UInt64) {
        counts[Self.bucket(nanoseconds)] += 1
        total += 1
    }

    /// Values below `subBuckets` are exact (magnitude 0). Above, a value keeps its top
    /// `subBucketBits + 1` bits: magnitude m >= 1 holds [128, 256) << (m - 1).
    static func bucket(_ value: UInt64) -> Int {
        guard value >= UInt64(subBuckets) else { return Int(value) }
        let shift = (64 - value.leadingZeroBitCount) - (subBucketBits + 1)
        let top = Int(value >> UInt64(shift))
        return (shift + 1) * subBuckets + (top - subBuckets)
    }

    /// The middle of a bucket, as nanoseconds.
    static func value(ofBucket index: Int) -> Double {
        let magnitude = index / subBuckets, sub = index % subBuckets
        if magnitude == 0 { return Double(sub) }
        let width = UInt64(1) << UInt64(magnitude - 1)
        return Double(UInt64(subBuckets + sub) * width) + Double(width - 1) / 2
    }

    /// The smallest recorded value that `fraction` of all values are at or below, in ns.
    func percentile(_ fraction: Double) -> Double {
        guard total > 0 else { return 0 }
        let rank = max(1, UInt64((fraction * Double(total)).rounded(.up)))
        var seen: UInt64 = 0
        for (index, count) in counts.enumerated() where count > 0 {
            seen += count
            if seen >= rank { return Self.value(ofBucket: index) }
        }
        return Self.value(ofBucket: counts.count - 1)
    }
}

/// What one run measured; also the JSON output.
struct BenchResult: Codable {
    var pattern: String
    var blockSize: Int
    var queueDepth: Int
    var seconds: Double
    var ops: UInt64
    var iops: Double
    var mibPerSecond: Double
    var p50us: Double
    var p99us: Double

    init(plan: BenchPlan, elapsed: Duration, latencies: LatencyHistogram) {
        let s = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        pattern = plan.pattern.rawValue
        blockSize = plan.blockBytes
        queueDepth = plan.queueDepth
        seconds = s
        ops = latencies.total
        iops = Double(ops) / s
        mibPerSecond = iops * Double(plan.blockBytes) / Double(1 << 20)
        p50us = latencies.percentile(0.50) / 1000
        p99us = latencies.percentile(0.99) / 1000
    }
}

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure IOPS, throughput and latency of one volume through the volume client.")
    // Options are taken as text and validated in `run`, so a bad value is one error line
    // and exit status 1 like every other cairn error.
    @Argument var volume: String
    @Option(help: "seqwrite, seqread, randwrite or randread.") var pattern: String
    @Option(name: .customLong("block-size"), help: "Bytes per request, a multiple of 4 KiB, e.g. 4KiB or 1MiB.")
    var blockSize = "4KiB"
    @Option(name: .customLong("queue-depth"), help: "Requests kept in flight (1 to 256).") var queueDepth = "1"
    @Option(help: "How long to run, e.g. 10s.") var duration = "10s"
    @Option(name: .customLong("size-limit"), help: "Only use the first BYTES of the volume.") var sizeLimit: String?
    @Flag(help: "Take the volume from another writer (fencing it); write patterns only.") var force = false
    @OptionGroup var client: ClientOptions

    func run() async throws {
        try await runReporting {
            let plan = try BenchPlan.parse(pattern: pattern, blockSize: blockSize, queueDepth: queueDepth,
                                           duration: duration, sizeLimit: sizeLimit)
            let (vc, pool) = try await openVolume(volume, client: client, readOnly: !plan.pattern.writes, force: force)
            defer { pool.closeAll() }
            let result: BenchResult
            do {
                let range = try plan.rangeBytes(volumeSize: vc.size)
                if !plan.pattern.writes { try await warnIfUnwritten(rangeBytes: range, chunkBytes: vc.volume.chunkSizeBytes) }
                // A fixed seed: repeated runs touch the same offsets.
                let offsets = BenchOffsets(rangeBytes: range, blockBytes: plan.blockBytes,
                                           sequential: plan.pattern.sequential, seed: 1)
                result = try await Self.measure(plan, offsets: offsets, volume: vc)
                await vc.close()
            } catch {
                await vc.close()
                throw error
            }
            try report(result)
        }
    }

    /// Runs the plan: `queueDepth` requests in flight until the duration is up, then drains.
    /// The clock stops when the last request answers, so drained requests count fully.
    static func measure(_ plan: BenchPlan, offsets: BenchOffsets, volume vc: VolumeClient) async throws -> BenchResult {
        var offsets = offsets
        let clock = ContinuousClock()
        let payload = Self.payload(bytes: plan.blockBytes)
        let request = Self.request(plan, volume: vc, payload: payload, clock: clock)
        var latencies = LatencyHistogram()
        let start = clock.now
        let deadline = start + plan.duration
        try await withThrowingTaskGroup(of: Duration.self) { group in
            for _ in 0..<plan.queueDepth {
                let offset = offsets.next()
                group.addTask { try await request(offset) }
            }
            while let latency = try await group.next() {
                latencies.record(nanoseconds: Self.nanoseconds(latency))
                if clock.now < deadline {
                    let offset = offsets.next()
                    group.addTask { try await request(offset) }
                }
            }
        }
        return BenchResult(plan: plan, elapsed: start.duration(to: clock.now), latencies: latencies)
    }

    /// One timed request at an offset.
    static func request(_ plan: BenchPlan, volume vc: VolumeClient, payload: ByteBuffer,
                        clock: ContinuousClock) -> @Sendable (UInt64) async throws -> Duration {
        let length = plan.blockBytes
        if plan.pattern.writes {
            // Every acknowledged write is already durable on all replicas, so FUA adds nothing.
            return { offset in try await clock.measure { try await vc.write(offset: offset, data: payload, fua: false) } }
        }
        return { offset in
            try await clock.measure {
                let data = try await vc.read(offset: offset, length: length)
                precondition(data.readableBytes == length, "the volume client returned a short read")
            }
        }
    }

    /// Non-zero, non-repeating bytes, so no layer could shortcut zeroes or compress.
    static func payload(bytes: Int) -> ByteBuffer {
        var rng = SplitMix64(seed: 0xCA12)
        var buffer = ByteBuffer()
        buffer.reserveCapacity(bytes)
        for _ in 0..<(bytes / 8) { buffer.writeInteger(rng.next() | 1) }
        return buffer
    }

    static func nanoseconds(_ d: Duration) -> UInt64 {
        UInt64(max(0, d.components.seconds)) * 1_000_000_000 + UInt64(max(0, d.components.attoseconds)) / 1_000_000_000
    }

    /// Reads of unallocated chunks never leave the client; say so rather than report them.
    func warnIfUnwritten(rangeBytes: UInt64, chunkBytes: UInt64) async throws {
        let status = try await client.managerClient().volume(volume)
        let chunksInRange = Int((rangeBytes + chunkBytes - 1) / chunkBytes)
        if status.chunksAllocated < chunksInRange {
            FileHandle.standardError.write(Data(("cairn: warning: only \(status.chunksAllocated) of the \(chunksInRange) chunks "
                + "in the range are written; reads of the others are zeroes made by the client without I/O\n").utf8))
        }
    }

    func report(_ r: BenchResult) throws {
        if client.output == .json { return try printJSON(r) }
        printTable(["PATTERN", "BLOCK", "QD", "SECONDS", "OPS", "IOPS", "MiB/s", "p50 us", "p99 us"], [[
            r.pattern, ByteSize.format(UInt64(r.blockSize)), "\(r.queueDepth)", String(format: "%.2f", r.seconds), "\(r.ops)",
            String(format: "%.0f", r.iops), String(format: "%.1f", r.mibPerSecond),
            String(format: "%.0f", r.p50us), String(format: "%.0f", r.p99us),
        ]])
    }
}
