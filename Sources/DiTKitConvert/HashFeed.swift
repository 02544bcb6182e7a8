// Source bytes the conversion has read, handed on to the whole-file SHA-256 so that it does not read
// them again. SHA-256 runs on one core at the speed SHA-NI allows, so on two cores it bounds a first
// conversion; the copy out of the page cache (`pread`) then moves to the converting core, which has
// time to spare. A converter reads a step of one source tensor into a slot, converts from it, and
// publishes it; the hash takes the slot that holds its next byte, reads what no slot holds (the
// container's headers, tensors read through a mapping) itself, and hands the slot back. The hash
// waits only for a slot being filled at its next byte, and converters wait for a slot only while the
// hash still runs, so neither can wait on the other for ever. Whatever the order of the reads, the
// hash covers each byte of the file once, in order: a slot whose bytes the hash has passed is
// handed back unread.
import DiTKitCore
#if canImport(Glibc)
import Glibc
#endif

final class HashFeed: @unchecked Sendable {
    /// Bytes a slot holds (a step of float32 values).
    let slotBytes: Int
    private let slots: [UnsafeMutableRawPointer]
    private var free: [Int]
    /// Slots being filled: (slot, file, first byte).
    private var filling: [(slot: Int, file: Int, offset: Int)] = []
    /// Slots filled: (slot, file, bytes).
    private var ready: [(slot: Int, file: Int, range: Range<Int>)] = []
    /// The hash's position: (file, next byte); nil once the hash is over.
    private var position: (file: Int, offset: Int)? = (0, 0)
    private var mutex = pthread_mutex_t()
    /// Bytes the hash took from slots (for the tests).
    private(set) var fedBytes = 0

    /// The files the hash reads (by index); bytes of the others are not lent slots.
    private let files: Set<Int>

    /// `count` nil: as many slots as hold 24 MiB (the hash may trail the converters by that much).
    init(files: Set<Int>, slots count: Int? = nil, slotBytes: Int = ConversionScratch.stepElements * 4) {
        let count = count ?? max(6, (24 << 20) / slotBytes)
        self.files = files
        self.slotBytes = slotBytes
        slots = (0..<count).map { _ in UnsafeMutableRawPointer.allocate(byteCount: slotBytes, alignment: 4096) }
        free = Array(slots.indices)
        pthread_mutex_init(&mutex, nil)
    }

    deinit {
        for s in slots { s.deallocate() }
        pthread_mutex_destroy(&mutex)
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }

    // MARK: converters

    /// A slot for `count` bytes of `file` from `offset`, waiting while every slot is taken; nil when
    /// the hash no longer needs them (it is over, or has passed them) or they do not fit a slot.
    func borrow(file: Int, offset: Int, count: Int, cancelled: () -> Bool) -> (slot: Int, pointer: UnsafeMutableRawPointer)? {
        guard count <= slotBytes, files.contains(file) else { return nil }
        while true {
            let got: Int?? = locked {
                guard let p = position, (file, offset + count) > (p.file, p.offset) else { return .some(nil) }
                guard let s = free.popLast() else { return nil }
                filling.append((s, file, offset))
                return .some(s)
            }
            switch got {
            case .some(let s?): return (s, slots[s])
            case .some(nil): return nil
            case nil:
                if cancelled() { return nil }
                usleep(100)
            }
        }
    }

    /// The slot now holds `count` bytes of its file from its offset.
    func publish(_ slot: Int, count: Int) {
        locked {
            guard let k = filling.firstIndex(where: { $0.slot == slot }) else { return }
            let f = filling.remove(at: k)
            ready.append((slot, f.file, f.offset..<(f.offset + count)))
        }
    }

    /// The slot was not filled (the step failed).
    func withdraw(_ slot: Int) {
        locked {
            guard let k = filling.firstIndex(where: { $0.slot == slot }) else { return }
            filling.remove(at: k)
            free.append(slot)
        }
    }

    // MARK: the hash

    /// SHA-256 of `count` bytes of file `file` (read from `descriptor` where no slot holds them),
    /// in steps of at most `stride` bytes; `pace` as for `SHA256Hasher.hex(mapped:)`. Files are
    /// hashed in order, each once.
    func sha256(file: Int, descriptor: Int32, count: Int, path: String, stride: Int = 8 << 20,
                pace: ((Range<Int>) -> Void)?, cancelled: () -> Bool) throws -> String {
        var h = SHA256Hasher()
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: stride, alignment: 4096)
        defer { buffer.deallocate() }
        locked { position = (file, 0) }
        var at = 0
        while at < count {
            enum Next { case slot(Int, Range<Int>), wait, read(Int) }
            let next: Next = locked {
                // Slots the hash has passed go back.
                ready.removeAll { r in
                    if r.file < file || (r.file == file && r.range.upperBound <= at) { free.append(r.slot); return true }
                    return false
                }
                if let r = ready.first(where: { $0.file == file && $0.range.contains(at) }) { return .slot(r.slot, r.range) }
                if filling.contains(where: { $0.file == file && $0.offset == at }) { return .wait }
                // Read up to the next byte a slot holds or will hold.
                let next = (ready.map { $0.file == file ? $0.range.lowerBound : Int.max } + filling.map { $0.file == file ? $0.offset : Int.max })
                    .filter { $0 > at }.min() ?? Int.max
                return .read(min(count, at + stride, next))
            }
            switch next {
            case .slot(let s, let range):
                let end = min(range.upperBound, count)
                h.update(UnsafeRawBufferPointer(start: slots[s] + (at - range.lowerBound), count: end - at))
                let fed = end - at
                at = end
                locked {
                    fedBytes += fed
                    position = (file, at)
                    if let k = ready.firstIndex(where: { $0.slot == s }) { ready.remove(at: k); free.append(s) }
                }
            case .wait:
                if cancelled() { throw CancellationError() }
                usleep(50)
            case .read(let end):
                pace?(at..<end)
                try RegularFile.read(descriptor, into: buffer, count: end - at, at: at, path: path)
                h.update(UnsafeRawBufferPointer(start: buffer, count: end - at))
                at = end
                locked { position = (file, at) }
            }
        }
        return h.finalizeHex()
    }

    /// The hash is over: slots are no longer lent, and those filled go back.
    func close() {
        locked {
            position = nil
            for r in ready { free.append(r.slot) }
            ready.removeAll()
        }
    }
}
