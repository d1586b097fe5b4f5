// Temporary until the HDF5 reader lands (branch h5): lets the other modules build.
extension KerasH5File {
    public static func read(path: String) throws -> KerasH5File {
        throw H5ModelError("\(path): HDF5 reading is not built yet")
    }
}
