import Foundation

/// One entry of `fixtures/manifest.json` (written by fixtures/make_fixtures.py with real Keras).
public struct FixtureCase: Decodable, Sendable {
    public var name: String
    public var keras: String
    public var description: String?
    public var model: String?
    public var weights: String?
    public var arch: String?
    public var io: String
    public var emulates: String?

    public func path(_ relative: String?) -> String? {
        relative.map { fixturesDirectory.appendingPathComponent($0).path }
    }

    /// Each way the case's model can be loaded: (label, model file, architecture JSON or nil).
    public var forms: [(label: String, model: String, arch: String?)] {
        var out: [(String, String, String?)] = []
        if let m = path(model) { out.append(("full", m, nil)) }
        if let w = path(weights), let a = path(arch) { out.append(("weights+json", w, a)) }
        if let m = path(model), let a = path(arch), weights == nil { out.append(("full+json", m, a)) }
        return out
    }
}

private struct Manifest: Decodable { var cases: [FixtureCase] }

/// All fixture cases; fails loudly when the manifest is missing (fixtures are committed).
public func fixtureCases() throws -> [FixtureCase] {
    let url = fixturesDirectory.appendingPathComponent("manifest.json")
    return try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: url)).cases
}
