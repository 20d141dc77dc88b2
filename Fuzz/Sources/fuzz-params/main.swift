// Any bytes as a parameters file (`elbolab fit --params-out`). A model that is read is also
// written back with ParamsFile.json and must read back as itself.
import Foundation
import ELBOLab
import FuzzDriver

runFuzzer { data, size in
    let bytes = Data(fuzzBytes(data, size))
    guard let model = expectValueOrInputError({ try ParamsFile.parse(bytes, path: "fuzz/params.json") }) else { return 0 }
    let text = Data(ParamsFile.json(model).text().utf8)
    let again = expectValueOrInputError { try ParamsFile.parse(text, path: "again.json") }
    if again?.loadings != model.loadings || again?.offset != model.offset || again?.noiseVariance != model.noiseVariance {
        fatalError("ParamsFile.json of an accepted model does not read back as that model")
    }
    return 0
}
