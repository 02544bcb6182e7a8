// Another package can depend on DiTKit by version and use what the README shows: SwiftPM refuses a
// versioned dependency whose targets use unsafe flags, and the products the README imports must
// exist. Loading the consumer's package graph checks both in under a minute; `make consumer`
// (run by CI) also compiles it.
import Testing
import Foundation

@Suite struct PackageConsumerTests {
    @Test func aPackageDependingOnDiTKitByVersionResolvesTheREADMEExample() throws {
        let r = try Tool.run(["bash", Tool.root + "/tools/check_consumer.sh"], viaShell: true)
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("resolves the README example"), "\(r.stdout)")
    }
}
