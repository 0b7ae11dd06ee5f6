/// How error messages quote a value from an input: cut to `limit` characters, saying how long it was, so a message
/// about a 250 KB line stays readable and a terminal is not flooded. Topology, CSV and flag errors all use it.
public enum QuotedValue {
    /// Enough to recognise a value.
    public static let limit = 200

    /// `text`, or its first `limit` characters followed by its length.
    public static func clip(_ text: String) -> String {
        text.count <= limit ? text : "\(text.prefix(limit))… (\(text.count) characters)"
    }

    /// `clip` applied to each line of a multi-line message (a YAML parser error quotes the offending line).
    public static func clip(lines text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { clip(String($0)) }.joined(separator: "\n")
    }
}
