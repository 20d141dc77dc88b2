// Any bytes as an experiment spec (JSON).
import Foundation
import ELBOLab
import FuzzDriver

runFuzzer { data, size in
    let bytes = Data(fuzzBytes(data, size))
    _ = expectValueOrInputError { try ExperimentSpec.parse(bytes, path: "fuzz/spec.json") }
    return 0
}
