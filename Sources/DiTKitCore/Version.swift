/// The DiTKit version, written into every manifest as the converter version.
public enum DiTKitVersion {
    public static let string = "0.1.0"
}
