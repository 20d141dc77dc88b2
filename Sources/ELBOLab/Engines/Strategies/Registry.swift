extension Strategy {
    /// Every strategy, in the order `fit --help`, `allCases` and the scopes' texts list them.
    /// A strategy is declared in its own file in this folder and listed here, once.
    public static let registered: [Strategy] = [
        .mle,
        .em,
        .perDatapoint,
        .amortized,
        .joint,
        .semiAmortized,
    ]
}
