/// Topology files are small and flat, so they never need YAML anchors (`&a`) or aliases (`*a`), and refusing them
/// up front closes the "billion laughs" family: a few hundred bytes of nested aliases used as mapping keys make the
/// YAML library's duplicate-key check expand them exponentially (seen: 434 bytes, minutes of CPU).
///
/// The scan skips comments and quoted scalars and flags `&` or `*` where a YAML node can begin (at the start of a
/// line or after white space, `[`, `{` or `,`) when a name follows. A plain scalar with such text inside (`name: a
/// *b`) is flagged too; quoting it is the way out, and the error says so.
enum YAMLSafety {
    static func check(_ yaml: String, source: String) throws {
        enum State { case plain, comment, singleQuoted, doubleQuoted }
        var state = State.plain
        var line = 1
        var previous: Character = "\n"
        var escaped = false
        var it = yaml.makeIterator()
        var next = it.next()
        while let c = next {
            next = it.next()
            let atTokenStart = previous == "\n" || previous == " " || previous == "\t" || "[{,".contains(previous)
            switch state {
            case .plain:
                if c == "#" && (previous == " " || previous == "\t" || previous == "\n") { state = .comment }
                else if c == "'" && (atTokenStart || previous == ":") { state = .singleQuoted }
                else if c == "\"" && (atTokenStart || previous == ":") { state = .doubleQuoted }
                else if (c == "&" || c == "*") && atTokenStart, let n = next, !n.isWhitespace, !",[]{}".contains(n) {
                    throw TopologyError(file: source, key: "(yaml)", line: line,
                                        problem: "YAML \(c == "&" ? "anchors (&name)" : "aliases (*name)") are not accepted in topology files; quote the value if it is text")
                }
            case .comment:
                if c == "\n" { state = .plain }
            case .singleQuoted:
                // '' is an escaped quote inside a single-quoted scalar.
                if c == "'" { if next == "'" { next = it.next() } else { state = .plain } }
            case .doubleQuoted:
                if escaped { escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { state = .plain }
            }
            if c == "\n" { line += 1 }
            previous = c
        }
    }
}
