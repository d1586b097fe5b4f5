/// Assigns every plan node's output an offset in one arena, reusing memory of values that are no
/// longer needed. Views (reshape, identity) share their input's storage.
struct BufferPlan {
    /// Float offset of each node's output in the arena.
    var offsets: [Int]
    /// Arena size in floats.
    var arenaCount: Int

    static let alignment = 16   // floats: 64 bytes, a cache line

    init(nodes: [PlanNode], outputs: [Int]) {
        let n = nodes.count
        var root = Array(0..<n)
        for (i, node) in nodes.enumerated() {
            if case .view = node.op { root[i] = root[node.inputs[0]] }
        }
        var lastUse = Array(0..<n)
        for (i, node) in nodes.enumerated() {
            for input in node.inputs { lastUse[root[input]] = max(lastUse[root[input]], i) }
        }
        for o in outputs { lastUse[root[o]] = n }
        // Model inputs stay valid for the whole run (the caller may read them back).
        for (i, node) in nodes.enumerated() { if case .input = node.op { lastUse[i] = n } }

        var free: [(offset: Int, size: Int)] = []
        var top = 0
        var offsets = Array(repeating: 0, count: n)
        var expiring: [Int: [Int]] = [:]     // step -> roots whose last use is that step
        for i in 0..<n where root[i] == i { expiring[lastUse[i], default: []].append(i) }
        let sizes = nodes.map { ($0.count + BufferPlan.alignment - 1) / BufferPlan.alignment * BufferPlan.alignment }
        for i in 0..<n {
            if root[i] == i {
                let size = max(sizes[i], BufferPlan.alignment)
                if let k = free.indices.filter({ free[$0].size >= size }).min(by: { free[$0].size < free[$1].size }) {
                    offsets[i] = free[k].offset
                    if free[k].size == size { free.remove(at: k) } else { free[k].offset += size; free[k].size -= size }
                } else {
                    offsets[i] = top
                    top += size
                }
            } else {
                offsets[i] = offsets[root[i]]
            }
            // Values last used by step i are released after it runs (never while it runs).
            for r in expiring[i] ?? [] {
                Self.release(&free, offset: offsets[r], size: max(sizes[r], BufferPlan.alignment))
            }
        }
        self.offsets = offsets
        self.arenaCount = max(top, BufferPlan.alignment)
    }

    private static func release(_ free: inout [(offset: Int, size: Int)], offset: Int, size: Int) {
        free.append((offset, size))
        free.sort { $0.offset < $1.offset }
        var merged: [(offset: Int, size: Int)] = []
        for block in free {
            if let last = merged.last, last.offset + last.size == block.offset {
                merged[merged.count - 1].size += block.size
            } else {
                merged.append(block)
            }
        }
        free = merged
    }
}
