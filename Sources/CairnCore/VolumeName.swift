/// Volume names: 1 to 63 lowercase letters, digits, '.' and '-', starting with a letter or
/// digit. The manager enforces it; clients that turn a name into a path check it too.
public func validateVolumeName(_ name: String) throws {
    let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789.-")
    guard !name.isEmpty, name.count <= 63, name.allSatisfy({ allowed.contains($0) }),
          let first = name.first, first.isLetter || first.isNumber else {
        throw CairnError.invalidArgument(
            "volume name '\(name)' is not valid: use 1 to 63 lowercase letters, digits, '.' and '-', starting with a letter or digit")
    }
}
