/// A problem with what the user gave ELBOLab: a file, an option, a spec.
///
/// Its description is one line a user can act on (`data.csv:12:3: "abc" is not a number`).
public struct InputError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The one-line message.
    public let message: String
    /// An error with `message` (one line: the problem and how to fix it).
    public init(_ message: String) { self.message = message }
    /// The message itself.
    public var description: String { message }
}

/// A numerical fault found during a run: a non-finite value, a variance collapsing to zero.
///
/// Raised at the step that produced it, naming the engine, the iteration and the quantity.
public struct NumericalFault: Error, CustomStringConvertible, Sendable {
    /// The engine (strategy) that was running.
    public let engine: String
    /// The iteration at which the fault was found.
    public let iteration: Int
    /// The quantity that went wrong (`ELBO`, `s2`, `encoder weights`, …).
    public let quantity: String
    /// What is wrong with it.
    public let detail: String

    /// A fault of `quantity` found by `engine` at `iteration`; `detail` says what is wrong with it.
    public init(engine: String, iteration: Int, quantity: String, detail: String) {
        self.engine = engine
        self.iteration = iteration
        self.quantity = quantity
        self.detail = detail
    }

    /// "engine: iteration t: quantity detail", one line.
    public var description: String {
        "\(engine): iteration \(iteration): \(quantity) \(detail)"
    }
}
