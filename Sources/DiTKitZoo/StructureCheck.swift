// Before a file with no published hash is trusted on first use, its structure is checked against
// its zoo entry: the family, and the tensor and parameter counts of the model it holds (which
// tell an architecture and its image size apart: DiT-S/2 has 132 tensors, DiT-XL/2 292; DiT-XL/2
// at 512 has 884,736 parameters more than at 256). A file that fails is discarded, never pinned.
import DiTKitCore
import DiTKitFormats
import DiTKitModels

extension ZooEntry {
    /// Whether `file` is one shard of a sharded release (the primary file is a safetensors index):
    /// a shard holds part of a model, so only its format can be checked on its own.
    public func isShard(_ file: ZooFile) -> Bool {
        !file.primary && file.container == "safetensors" && (primaryFile.map { ShardedSafetensors.isIndex($0.name) } ?? false)
    }

    /// The counts this entry states for the image size it is released at (`any` for an autoencoder).
    var releasedCounts: (size: String, tensors: Int, parameters: Int)? {
        let size = recipes.first?.imageSize ?? imageSize
        return counts.first { $0.size == size.map(String.init) } ?? counts.first { $0.size == "any" } ?? (counts.count == 1 ? counts[0] : nil)
    }

    /// Checks that `path` (a download of `file`, possibly still under a temporary name) holds what
    /// this entry describes, and says what was checked (`DiT-XL/2: 292 tensors, 675,129,632
    /// parameters`). A JSON companion must parse; a shard must open as safetensors with tensors;
    /// any other weights file must hold a model of the entry's family with the entry's tensor and
    /// parameter counts. Layouts that do not record the image size or head count are read at the
    /// entry's image size (head counts change no shape). Throws `ZooError.structure`.
    public func checkStructure(of file: ZooFile, at path: String) throws -> String {
        let label = "\(id)/\(file.name)"
        func refuse(_ why: String) -> ZooError { .structure(file: label, why: why) }
        let container: any TensorContainer
        if file.container == "json" && ShardedSafetensors.isIndex(file.name) {
            // A sharded release's index, fetched after its shards: the model they make up together.
            do { container = try ShardedSafetensors(index: path) } catch { throw refuse("not a safetensors index with its shards: \(Self.reason(error))") }
        } else if file.container == "json" {
            do { _ = try JSONReader.parse(try FileSystem.readFile(path)) } catch { throw refuse("not JSON: \(error)") }
            return "JSON"
        } else {
            do { container = try Checkpoint.open(path) } catch { throw refuse("not a checkpoint DiTKit reads: \(Self.reason(error))") }
            if isShard(file) {
                guard !container.tensors.isEmpty else { throw refuse("a shard with no tensors") }
                return "a shard of \(NumberFormat.counted(container.tensors.count, "tensor"))"
            }
        }
        var hints = DetectionHints()
        hints.select = recipes.first?.select
        hints.diffusersConfig = LoadedModel.diffusersConfig(besides: path)
        hints.trainArgsModel = container.objects.first { $0.name == "args.model" }?.value
        let plan: ModelPlan
        do {
            do {
                plan = try ModelDetector.plan(container, hints: hints)
            } catch ModelError.needsOption {
                hints.imageSize = recipes.first?.imageSize ?? imageSize
                if hints.diffusersConfig?["num_attention_heads"] == nil { hints.numHeads = 1 }
                plan = try ModelDetector.plan(container, hints: hints)
            }
        } catch {
            throw refuse("holds no \(family.title) DiTKit reads: \(Self.reason(error))")
        }
        let found = plan.configuration
        let tensors = plan.tensors.count
        let parameters = plan.tensors.reduce(0) { $0 + $1.shape.reduce(1, *) }
        let seen = "\(found.variant): \(grouped(tensors)) tensors, \(grouped(parameters)) parameters"
        guard found.family.name == family.name else { throw refuse("it holds a \(found.family.title) (\(seen)), not a \(family.title)") }
        guard let want = releasedCounts else { return seen }
        if tensors != want.tensors || parameters != want.parameters {
            let at = want.size == "any" ? "" : " at \(want.size)"
            var why = "it holds \(seen); \(id) is \(architecture)\(at): \(grouped(want.tensors)) tensors, \(grouped(want.parameters)) parameters"
            if let ref = configuration(imageSize: Int(want.size)) {
                let differs = found.differences(from: ref)
                if !differs.isEmpty { why += " (differs: \(differs.joined(separator: "; ")))" }
            }
            throw refuse(why)
        }
        return seen
    }

    /// The message of a wrapped error without the temporary path it names.
    static func reason(_ error: Error) -> String {
        if let f = error as? FileError { return String(describing: f.underlying) }
        return String(describing: error)
    }
}
