// The ranks of a data-parallel run and the few collective operations training needs: a sum over
// all ranks (gradients, batch-norm moments, epoch sums) and an abort that ends them all.
//
// Under `mpirun`, the MPI library (Open MPI's libmpi.so.40, Debian's openmpi-bin/libopenmpi3) is
// loaded at run time with dlopen, so distillctl neither links nor needs MPI for a plain run.
// Open MPI's predefined handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM...) are the addresses of
// exported objects (`ompi_mpi_comm_world`...), which dlsym gives directly.
import Foundation

public protocol Collective: AnyObject, Sendable {
    var rank: Int { get }
    var size: Int { get }
    /// Element-wise sum over all ranks, in place, every rank getting the result.
    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws
    func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws
    /// Ends every rank (after a fatal error on this one).
    func abort(code: Int32) -> Never
}

extension Collective {
    public var isRoot: Bool { rank == 0 }
    public var isDistributed: Bool { size > 1 }

    public func allReduceSum(_ values: inout [Double]) throws {
        let n = values.count
        try values.withUnsafeMutableBufferPointer { try allReduceSum($0.baseAddress!, count: n) }
    }
}

/// One process, no MPI.
public final class SingleProcess: Collective {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {}
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {}
    public func abort(code: Int32) -> Never { exit(code) }
}

public enum Distributed {
    /// The ranks this process belongs to: MPI's when started by mpirun with more than one rank
    /// (Open MPI sets OMPI_COMM_WORLD_SIZE), else a single process.
    public static func detect(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> any Collective {
        guard let text = environment["OMPI_COMM_WORLD_SIZE"] ?? environment["PMIX_SIZE"], let size = Int(text), size > 1 else {
            return SingleProcess()
        }
        return try MPICollective.initialize()
    }

    /// Ranks on this machine (mpirun's local size), to share its cores between them.
    public static func localRanks(environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        max(1, Int(environment["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "") ?? 1)
    }
}

/// Open MPI through dlopen.
public final class MPICollective: Collective, @unchecked Sendable {
    typealias Handle = UnsafeMutableRawPointer
    typealias InitFn = @convention(c) (UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32
    typealias CommIntFn = @convention(c) (Handle, UnsafeMutablePointer<Int32>) -> Int32
    typealias AllreduceFn = @convention(c) (UnsafeRawPointer, UnsafeMutableRawPointer, Int32, Handle, Handle, Handle) -> Int32
    typealias AbortFn = @convention(c) (Handle, Int32) -> Int32
    typealias FinalizeFn = @convention(c) () -> Int32

    public let rank: Int
    public let size: Int
    let world: Handle, floatType: Handle, doubleType: Handle, sum: Handle
    let allreduce: AllreduceFn, abortFn: AbortFn, finalizeFn: FinalizeFn
    /// MPI_IN_PLACE is ((void *) 1) in Open MPI.
    static let inPlace = UnsafeRawPointer(bitPattern: 1)!

    static func initialize() throws -> MPICollective {
        let names = ["libmpi.so.40", "libmpi.so"]
        guard let lib = names.lazy.compactMap({ dlopen($0, RTLD_NOW | RTLD_GLOBAL) }).first else {
            throw RuntimeError("started by mpirun, but Open MPI's library (libmpi.so.40) cannot be loaded: install openmpi-bin (Debian: apt-get install openmpi-bin)")
        }
        func symbol<T>(_ name: String, as type: T.Type) throws -> T {
            guard let p = dlsym(lib, name) else { throw RuntimeError("libmpi.so.40 has no '\(name)': not Open MPI?") }
            return unsafeBitCast(p, to: type)
        }
        func object(_ name: String) throws -> Handle {
            guard let p = dlsym(lib, name) else { throw RuntimeError("libmpi.so.40 has no '\(name)': not Open MPI?") }
            return p
        }
        let initFn = try symbol("MPI_Init", as: InitFn.self)
        guard initFn(nil, nil) == 0 else { throw RuntimeError("MPI_Init failed") }
        let world = try object("ompi_mpi_comm_world")
        var r: Int32 = 0, s: Int32 = 0
        _ = try symbol("MPI_Comm_rank", as: CommIntFn.self)(world, &r)
        _ = try symbol("MPI_Comm_size", as: CommIntFn.self)(world, &s)
        return MPICollective(rank: Int(r), size: Int(s), world: world, floatType: try object("ompi_mpi_float"),
                             doubleType: try object("ompi_mpi_double"), sum: try object("ompi_mpi_op_sum"),
                             allreduce: try symbol("MPI_Allreduce", as: AllreduceFn.self),
                             abortFn: try symbol("MPI_Abort", as: AbortFn.self),
                             finalizeFn: try symbol("MPI_Finalize", as: FinalizeFn.self))
    }

    init(rank: Int, size: Int, world: Handle, floatType: Handle, doubleType: Handle, sum: Handle,
         allreduce: @escaping AllreduceFn, abortFn: @escaping AbortFn, finalizeFn: @escaping FinalizeFn) {
        self.rank = rank
        self.size = size
        self.world = world
        self.floatType = floatType
        self.doubleType = doubleType
        self.sum = sum
        self.allreduce = allreduce
        self.abortFn = abortFn
        self.finalizeFn = finalizeFn
        atexit { MPICollective.finalizeAtExit?() }
        MPICollective.finalizeAtExit = { [finalizeFn] in _ = finalizeFn() }
    }

    nonisolated(unsafe) static var finalizeAtExit: (() -> Void)?

    /// MPI counts are Int32: large buffers go in pieces.
    private func reduce(_ buffer: UnsafeMutableRawPointer, count: Int, stride: Int, type: Handle) throws {
        var done = 0
        while done < count {
            let n = min(count - done, Int(Int32.max))
            let rc = allreduce(Self.inPlace, buffer + done * stride, Int32(n), type, sum, world)
            guard rc == 0 else { throw RuntimeError("MPI_Allreduce failed on rank \(rank) (error \(rc))") }
            done += n
        }
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        try reduce(UnsafeMutableRawPointer(buffer), count: count, stride: 4, type: floatType)
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        try reduce(UnsafeMutableRawPointer(buffer), count: count, stride: 8, type: doubleType)
    }

    public func abort(code: Int32) -> Never {
        _ = abortFn(world, code)
        exit(code)
    }
}
