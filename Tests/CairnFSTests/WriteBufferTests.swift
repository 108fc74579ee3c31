@testable import CairnFS
import CairnCore
import CairnMeta
import NIOCore
import XCTest

/// A SliceStore whose appends first run `before(first byte appended)`: a test holds one
/// back or makes it fail, whichever order the background flushes call it in.
final class ScriptedSliceStore: SliceStore, @unchecked Sendable {
    let inner: MemorySliceStore
    let before: @Sendable (UInt8) async throws -> Void
    let calls = Locked<Int>(0)
    init(_ inner: MemorySliceStore, before: @escaping @Sendable (UInt8) async throws -> Void) {
        self.inner = inner; self.before = before
    }

    func append(_ bytes: ByteBuffer) async throws -> (volume: String, offset: UInt64) {
        calls.withLock { $0 += 1 }
        try await before(bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) ?? 0)
        return try await inner.append(bytes)
    }
    func read(volume: String, offset: UInt64, length: Int) async throws -> ByteBuffer {
        try await inner.read(volume: volume, offset: offset, length: length)
    }
    var appendVolume: String { inner.appendVolume }
    var appendMark: UInt64 { inner.appendMark }
    func trimOwn(_ ranges: [Range<UInt64>]) async throws { try await inner.trimOwn(ranges) }
}

/// A one-shot gate a task waits at until the test opens it.
final class Gate: @unchecked Sendable {
    private let state = Locked<(open: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))
    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let go = state.withLock { s -> Bool in
                if s.open { return true }
                s.waiting.append(c)
                return false
            }
            if go { c.resume() }
        }
    }
    func open() {
        let w = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.open = true
            defer { s.waiting = [] }
            return s.waiting
        }
        for c in w { c.resume() }
    }
}

/// Pipelined flushes (WriteBuffer.swift) and read assembly (FileSystem.readBuffers).
final class WriteBufferTests: XCTestCase {
    let root = FileSystem.rootInode
    let layerBytes = 4096

    func mount(_ store: MetaStore, _ data: SliceStore, _ id: String, buffering: WriteBufferLimits = .none) async throws -> FileSystem {
        try await makeTestMount(store, data, id, buffering: buffering)
    }

    func buffering() -> WriteBufferLimits { WriteBufferLimits(perFileBytes: layerBytes, totalBytes: 1 << 30) }

    func fill(_ byte: UInt8, _ count: Int) -> [UInt8] { [UInt8](repeating: byte, count: count) }

    /// Waits (bounded) until `condition` holds; the background flushes run meanwhile.
    func eventually(_ what: String, _ condition: () -> Bool) async throws {
        for _ in 0..<2000 {
            if condition() { return }
            try await Task.sleep(nanoseconds: 1_000_000)
        }
        XCTFail("never: \(what)")
    }

    /// Layer 1's data is held back while layer 2's lands: layer 2 still commits after
    /// layer 1, so the newer bytes win; reads on the writing mount see the newest bytes
    /// throughout; writes past `flushesInFlightMax` layers wait for a free slot.
    func testLayersCommitInTheOrderTakenWhateverOrderTheirDataLands() async throws {
        let gate = Gate()
        let store = MemoryMetaStore(), memory = MemorySliceStore()
        let data = ScriptedSliceStore(memory) { first in if first == 1 { await gate.wait() } }
        let a = try await mount(store, data, "a", buffering: buffering())
        let b = try await mount(store, memory, "b")
        let f = try await a.makeNode(root, "f", mode: FileType.regular | 0o644, uid: 0, gid: 0)
        for layer in 1...FileSystem.flushesInFlightMax {
            _ = try await a.write(f.ino, offset: 0, bytes: fill(UInt8(layer), layerBytes))  // each starts a layer
        }
        let newest = UInt8(FileSystem.flushesInFlightMax)
        let seen = try await a.read(f.ino, offset: 0, length: layerBytes)
        XCTAssertEqual(seen, fill(newest, layerBytes))
        try await eventually("layers 2... have stored their data") { data.calls.snapshot == FileSystem.flushesInFlightMax }
        let stored = try await b.getattr(f.ino).size
        XCTAssertEqual(stored, 0, "no layer commits before layer 1")
        // One more layer waits for a free slot.
        let extraDone = Locked(false)
        let extra = Task {
            _ = try await a.write(f.ino, offset: 0, bytes: self.fill(newest + 1, self.layerBytes))
            extraDone.withLock { $0 = true }
        }
        try await Task.sleep(nanoseconds: 50_000_000)
        XCTAssertFalse(extraDone.snapshot, "a write past the in-flight limit waits")
        gate.open()
        try await extra.value
        try await a.flush(f.ino)
        XCTAssertEqual(a.bufferedByteCount, 0)
        let final = try await b.read(f.ino, offset: 0, length: layerBytes)
        XCTAssertEqual(final, fill(newest + 1, layerBytes))
    }

    /// A flush waits for the layers in flight even with nothing pending of its own.
    func testFlushWithNothingPendingWaitsForLayersInFlight() async throws {
        let gate = Gate()
        let store = MemoryMetaStore(), memory = MemorySliceStore()
        let data = ScriptedSliceStore(memory) { first in if first == 7 { await gate.wait() } }
        let a = try await mount(store, data, "a", buffering: buffering())
        let b = try await mount(store, memory, "b")
        let f = try await a.makeNode(root, "f", mode: FileType.regular | 0o644, uid: 0, gid: 0)
        _ = try await a.write(f.ino, offset: 0, bytes: fill(7, layerBytes))
        let flushed = Locked(false)
        let flush = Task {
            try await a.flush(f.ino)
            flushed.withLock { $0 = true }
        }
        try await Task.sleep(nanoseconds: 50_000_000)
        XCTAssertFalse(flushed.snapshot, "the flush waits for the background layer")
        gate.open()
        try await flush.value
        let seen = try await b.read(f.ino, offset: 0, length: layerBytes)
        XCTAssertEqual(seen, fill(7, layerBytes))
    }

    /// A failed layer goes back under the newer layers and pending bytes, in order; the
    /// writer's next flush-starting write runs inline and reports the error; once the
    /// store works again a flush stores the newest bytes everywhere.
    func testFailedLayerGoesBackUnderNewerBytes() async throws {
        let gate = Gate()
        let failing = Locked(true)
        let store = MemoryMetaStore(), memory = MemorySliceStore()
        let data = ScriptedSliceStore(memory) { first in
            if first == 1 {
                await gate.wait()
                throw FSError.io("injected failure of layer 1")
            }
            if first != 2 && failing.snapshot { throw FSError.io("injected failure") }
        }
        let a = try await mount(store, data, "a", buffering: buffering())
        let b = try await mount(store, memory, "b")
        let f = try await a.makeNode(root, "f", mode: FileType.regular | 0o644, uid: 0, gid: 0)
        _ = try await a.write(f.ino, offset: 0, bytes: fill(1, layerBytes))       // layer 1: held, then fails
        _ = try await a.write(f.ino, offset: 100, bytes: fill(2, layerBytes))     // layer 2: stored, waits its turn
        _ = try await a.write(f.ino, offset: 200, bytes: fill(3, 10))             // pending
        var reference = fill(1, layerBytes)
        reference += fill(0, 100)
        reference.replaceSubrange(100..<100 + layerBytes, with: fill(2, layerBytes))
        reference.replaceSubrange(200..<210, with: fill(3, 10))
        try await eventually("layer 2 stored its data") { data.calls.snapshot == 2 }
        gate.open()
        try await eventually("layer 1 failed") { a.buffers.withLock { $0.files[f.ino]?.backgroundFailed ?? false } }
        XCTAssertEqual(a.buffers.withLock { $0.files[f.ino]?.flushing.count }, 0, "layer 2 went back too")
        let seen = try await a.read(f.ino, offset: 0, length: 10_000)
        XCTAssertEqual(seen, reference)
        let stored = try await b.getattr(f.ino).size
        XCTAssertEqual(stored, 0, "layer 2 did not commit over the failed layer 1")
        // The next write that reaches the limit stores inline, and fails.
        do {
            _ = try await a.write(f.ino, offset: 0, bytes: fill(4, 10))
            XCTFail("the write should report the store's failure")
        } catch let e as FSError {
            XCTAssertEqual(e.errno, FSError.io("").errno)
        }
        reference.replaceSubrange(0..<10, with: fill(4, 10))
        let again = try await a.read(f.ino, offset: 0, length: 10_000)
        XCTAssertEqual(again, reference, "nothing acknowledged is lost")
        failing.withLock { $0 = false }
        try await a.flush(f.ino)
        XCTAssertEqual(a.bufferedByteCount, 0)
        let final = try await b.read(f.ino, offset: 0, length: 10_000)
        XCTAssertEqual(final, reference)
    }

    /// Reads over slices, holes and buffered bytes: the same bytes as a reference file;
    /// without buffered bytes in the range, the store's buffers come back as they are.
    func testReadAssemblyAcrossSlicesHolesAndBuffers() async throws {
        let store = MemoryMetaStore(), data = MemorySliceStore()
        let a = try await mount(store, data, "a", buffering: WriteBufferLimits(perFileBytes: 1 << 20, totalBytes: 1 << 30))
        let f = try await a.makeNode(root, "f", mode: FileType.regular | 0o644, uid: 0, gid: 0)
        var reference = fill(0, 10_000)
        func write(_ offset: Int, _ bytes: [UInt8]) async throws {
            _ = try await a.write(f.ino, offset: UInt64(offset), bytes: bytes)
            reference.replaceSubrange(offset..<offset + bytes.count, with: bytes)
        }
        try await write(0, fill(1, 1000))
        try await write(3000, fill(2, 1000))
        try await a.flush(f.ino)
        try await write(500, fill(3, 1000))  // over a slice and the hole after it
        try await a.flush(f.ino)
        try await write(9000, fill(4, 1000))  // stored: the file ends at 10,000
        try await a.flush(f.ino)
        try await write(2900, fill(5, 50))  // buffered, in the hole
        let map = try await a.getattr(f.ino).slices
        XCTAssertEqual(map.count, 4)
        let parts = FileSystem.readParts(map, from: 0, to: 10_000)
        XCTAssertEqual(parts.map(\.range), [0..<500, 500..<1500, 1500..<3000, 3000..<4000, 4000..<9000, 9000..<10_000])
        XCTAssertEqual(parts.map { $0.slice == nil }, [false, false, true, false, true, false])
        var rng = SplitMix64(seed: 11)
        for _ in 0..<200 {
            let offset = Int(rng.next() % 10_500), length = Int(rng.next() % 5000) + 1
            let got = try await a.read(f.ino, offset: UInt64(offset), length: length)
            let want = offset >= 10_000 ? [] : Array(reference[offset..<min(10_000, offset + length)])
            XCTAssertEqual(got, want, "read \(offset)+\(length)")
        }
        let away = try await a.readBuffers(f.ino, offset: 3500, length: 6000)  // no buffered bytes there
        XCTAssertEqual(away.map(\.readableBytes), [500, 5000, 500])
        let over = try await a.readBuffers(f.ino, offset: 2000, length: 2000)  // the buffered 50 bytes
        XCTAssertEqual(over.count, 1)
        XCTAssertEqual(Array(over[0].readableBytesView), Array(reference[2000..<4000]))
    }

    /// The kernel asks for security.capability before every write: while the file is
    /// buffered, a known absence costs no store call; this mount's setxattr is seen.
    func testCapabilityAbsenceIsRememberedWhileTheFileIsBuffered() async throws {
        let store = CountingMetaStore(MemoryMetaStore())
        let a = try await mount(store, MemorySliceStore(), "a", buffering: WriteBufferLimits(perFileBytes: 1 << 20, totalBytes: 1 << 30))
        let f = try await a.makeNode(root, "f", mode: FileType.regular | 0o644, uid: 0, gid: 0)
        func capability() async -> Int32? {
            do { _ = try await a.getxattr(f.ino, "security.capability"); return nil } catch let e as FSError { return e.errno } catch { return -1 }
        }
        let noData = FSError.noData("").errno
        var unbuffered = await capability()
        XCTAssertEqual(unbuffered, noData)
        _ = try await a.write(f.ino, offset: 0, bytes: [1])
        let first = await store.count { let e = await capability(); XCTAssertEqual(e, noData) }
        XCTAssertEqual(first, 1)
        let repeated = await store.count { let e = await capability(); XCTAssertEqual(e, noData) }
        XCTAssertEqual(repeated, 0)
        try await a.setxattr(f.ino, "security.capability", [9], flags: [])
        let value = try await a.getxattr(f.ino, "security.capability")
        XCTAssertEqual(value, [9])
        try await a.removexattr(f.ino, "security.capability")
        unbuffered = await capability()
        XCTAssertEqual(unbuffered, noData)
        try await a.flush(f.ino)  // the buffer goes, and what it remembered with it
        let after = await store.count { let e = await capability(); XCTAssertEqual(e, noData) }
        XCTAssertEqual(after, 1)
    }
}
