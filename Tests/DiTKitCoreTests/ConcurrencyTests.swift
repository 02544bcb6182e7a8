import Testing
import DiTKitCore

@Suite struct ConcurrencyTests {
    final class Tracked: @unchecked Sendable {
        let value: Int
        let released: AtomicCounter
        init(_ value: Int, released: AtomicCounter) { self.value = value; self.released = released }
        deinit { _ = released.increment() }
    }

    @Test func resultsComeBackInIndexOrderWhateverTheHandOutOrder() {
        let order = Array((0..<100).reversed())
        let squares = parallelMap(100, workers: 4, order: order) { $0 * $0 }
        #expect(squares == (0..<100).map { $0 * $0 })
    }

    @Test func everyResultIsReleased() {
        // The CI fuzz smoke run found `ditkit check` leaking its per-tensor results; the results
        // of a parallel map must be freed with the array that holds them.
        let released = AtomicCounter()
        do {
            let objects = parallelMap(50, workers: 4) { Tracked($0, released: released) }
            #expect(objects.map(\.value) == Array(0..<50))
        }
        #expect(released.increment() == 50)
    }

    @Test func theFirstErrorStopsTheWorkAndIsRethrown() {
        struct Boom: Error {}
        let ran = AtomicCounter()
        #expect(throws: Boom.self) {
            _ = try parallelMap(10_000, workers: 2) { i -> Int in
                _ = ran.increment()
                if i == 3 { throw Boom() }
                return i
            }
        }
        #expect(ran.increment() < 10_000)
    }
}
