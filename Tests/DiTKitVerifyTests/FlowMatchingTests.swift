// The flow-matching schedules against diffusers' FlowMatchEulerDiscreteScheduler
// (tools/make_flowmatch_fixture.py): SD3's static shift, FLUX.1-dev's resolution-dependent shift
// and FLUX.1-schnell's unshifted schedule.
import Testing
import DiTKitCore
import DiTKitModels

@Suite struct FlowMatchingTests {
    let fixture: JSONValue
    init() throws { fixture = try JSONReader.parse(try FileSystem.readFile(Fixtures.path("sample/flowmatch.json"))) }

    func floats(_ v: JSONValue?) -> [Float] { (v?.arrayValue ?? []).compactMap { $0.doubleValue.map(Float.init) } }

    /// Equal to within one float32 ulp (diffusers rounds some intermediate steps differently).
    func close(_ a: [Float], _ b: [Float]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= max($0.ulp, $1.ulp) }
    }

    @Test func sd3StaticShiftMatchesDiffusers() throws {
        for c in fixture["shifted"]?.arrayValue ?? [] {
            let s = try FlowMatchSchedule.shifted(steps: c["steps"]!.intValue!, shift: c["shift"]!.doubleValue!)
            #expect(close(s.sigmas, floats(c["sigmas"])), "\(c)")
            #expect(close(s.timesteps, floats(c["timesteps"])), "\(c)")
        }
    }

    @Test func fluxDynamicShiftMatchesDiffusers() throws {
        for c in fixture["dynamic"]?.arrayValue ?? [] {
            let mu = FlowMatchSchedule.mu(imageSequenceLength: c["sequence_length"]!.intValue!)
            #expect(abs(mu - c["mu"]!.doubleValue!) < 1e-12)
            let s = try FlowMatchSchedule.dynamic(steps: c["steps"]!.intValue!, mu: mu)
            #expect(close(s.sigmas, floats(c["sigmas"])), "\(c)")
            #expect(close(s.timesteps, floats(c["timesteps"])), "\(c)")
        }
        let schnell = try FlowMatchSchedule.dynamic(steps: 4, mu: nil)
        #expect(schnell.sigmas == floats(fixture["schnell"]?["sigmas"]))
    }

    @Test func eulerStepMovesAlongTheVelocity() throws {
        let s = try FlowMatchSchedule.dynamic(steps: 4, mu: nil)
        var x: [Float] = [1, -2]
        s.step(x: &x, velocity: [4, 8], index: 0)
        #expect(x == [0, -4])   // dt = 0.75 - 1
        #expect(throws: DiffusionError.self) { _ = try FlowMatchSchedule.shifted(steps: 0, shift: 3) }
    }
}
