import Foundation

/// Operations that a Functional config records as layers, rather than Keras layer classes:
/// - tf-keras's `TFOpLambda` (`"function": "math.multiply"`), written whenever model code does
///   arithmetic on tensors (`x + 3.0`, `x / 255.0`, `tf.nn.relu6(x)`); the first argument is the
///   inbound tensor, the others sit among the call's keywords (`{"y": 3.0, "name": null}`), a
///   tensor there as `[name, node, tensor]`;
/// - Keras 3's operations (`module` "keras.src.ops.numpy", class `Add`, `Multiply`, ...), whose
///   operands are the call's positional arguments, constants included (`args: [tensor, 3.0]`),
///   and whose parameters (axis, keepdims) are in the config.
/// Each becomes one of the layer graph's existing operations; anything else is refused in one
/// line naming the operation and the layer.
struct OpLayer {
    /// The operation and which of the call's tensors (`LayerCall.tensors`) it takes, in order.
    var op: LayerOp
    var inputs: [Int]
}

/// Whether a class is tf-keras's operation layer (TFOpLambda, or SlicingOpLambda for `x[...]`).
func isTFOpLayer(_ className: String) -> Bool { className == "TFOpLambda" || className == "SlicingOpLambda" }

/// Whether a layer entry records an operation: tf-keras's op layers, or a Keras 3 op. Keras 3's
/// legacy `.h5` config has no `module`; there an operation is told from the layer of the same
/// class name (`Add`, `Multiply`, `Concatenate`...) by its config, which holds only `name` and
/// the operation's own parameters, where every layer's has `trainable` and `dtype`.
func isOpLayer(_ entry: [String: Any], className: String) -> Bool {
    if isTFOpLayer(className) { return true }
    if let module = entry["module"] as? String { return module.hasPrefix("keras.src.ops.") }
    guard !modelClassNames.contains(className), let config = entry["config"] as? [String: Any],
          config["trainable"] == nil, config["dtype"] == nil,
          let call = (entry["inbound_nodes"] as? [Any])?.first as? [String: Any], call["args"] != nil else { return false }
    return true
}

/// One operand of an operation: a tensor of the call, or a constant broadcast over channels.
private enum Operand {
    case tensor(Int)
    case constant([Float])
}

private enum Arithmetic: String { case add, subtract, multiply, divide, maximum, minimum }

private enum Reduction { case mean, max, sum }

struct OpLayerParser {
    let config: LayerConfig
    let call: LayerCall
    /// Shapes (batch excluded) of the call's tensors, in `call.tensors` order.
    let shapes: [[Int]]

    /// Where a tensor of the call stands among `call.tensors` (the builder's producer order).
    private func index(of ref: TensorRef) -> Int { call.tensors.firstIndex(of: ref)! }

    func parse(function: String) throws -> OpLayer {
        try isTFOpLayer(config.className) ? parseTFOp(function) : parseKeras3Op()
    }

    // MARK: tf-keras TFOpLambda

    /// The TF function's arguments by name: the first from the call's positional argument,
    /// the rest from its keywords; `name` (always null) is dropped.
    private func tfArguments(first: String) throws -> [String: CallValue] {
        guard call.args.count == 1 else { throw config.fail("the call has \(call.args.count) positional arguments, expected 1") }
        var args = call.kwargs
        args["name"] = nil
        guard args[first] == nil else { throw config.fail("argument '\(first)' is given twice") }
        args[first] = call.args[0]
        return args
    }

    private func parseTFOp(_ function: String) throws -> OpLayer {
        let name = function.hasPrefix("tf.") ? String(function.dropFirst(3)) : function
        let binary: [String: Arithmetic] = [
            "__operators__.add": .add, "math.add": .add, "add": .add,
            "__operators__.sub": .subtract, "math.subtract": .subtract, "subtract": .subtract,
            "__operators__.mul": .multiply, "math.multiply": .multiply, "multiply": .multiply,
            "__operators__.truediv": .divide, "math.truediv": .divide, "math.divide": .divide,
            "truediv": .divide, "divide": .divide,
            "math.maximum": .maximum, "maximum": .maximum, "math.minimum": .minimum, "minimum": .minimum,
        ]
        if let kind = binary[name] {
            var args = try tfArguments(first: "x")
            guard let y = args.removeValue(forKey: "y") else { throw config.fail("'\(function)' has no argument 'y'") }
            let x = args.removeValue(forKey: "x")!
            try refuseRest(args, function)
            return try arithmetic(kind, operand(x, "x"), operand(y, "y"))
        }
        let unary: [String: ActivationSpec] = [
            "nn.relu": .relu, "math.relu": .relu, "nn.relu6": .relu6, "math.sigmoid": .sigmoid, "nn.sigmoid": .sigmoid,
            "sigmoid": .sigmoid, "math.tanh": ActivationSpec(.tanh), "nn.tanh": ActivationSpec(.tanh),
            "tanh": ActivationSpec(.tanh), "nn.silu": .swish, "nn.swish": .swish, "math.exp": ActivationSpec(.exponential),
            "exp": ActivationSpec(.exponential), "nn.elu": ActivationSpec(.elu, alpha: 1), "nn.selu": ActivationSpec(.selu),
            "math.softplus": ActivationSpec(.softplus), "nn.softplus": ActivationSpec(.softplus),
            "nn.softsign": ActivationSpec(.softsign), "math.softsign": ActivationSpec(.softsign),
            "nn.gelu": ActivationSpec(.gelu), "math.sqrt": ActivationSpec(.sqrt), "sqrt": ActivationSpec(.sqrt),
            "math.rsqrt": ActivationSpec(.rsqrt), "rsqrt": ActivationSpec(.rsqrt), "math.square": ActivationSpec(.square),
            "square": ActivationSpec(.square), "math.log": ActivationSpec(.log), "log": ActivationSpec(.log),
        ]
        let firstName = ["nn.relu", "nn.relu6", "nn.silu", "nn.swish", "nn.elu", "nn.selu", "nn.softplus", "nn.softsign",
                         "nn.gelu"].contains(name) ? "features" : "x"
        if let spec = unary[name] {
            var args = try tfArguments(first: firstName)
            let x = try tensorOperand(args.removeValue(forKey: firstName)!, firstName)
            if name == "nn.silu" || name == "nn.swish", let beta = pop(&args, "beta") {
                guard let b = beta.constantValue.flatMap(number), b == 1 else {
                    throw config.fail("'\(function)' with beta \(briefJSON(beta.constantValue ?? "a tensor")) is not supported (beta 1 only)")
                }
            }
            if name == "nn.gelu", let approximate = pop(&args, "approximate") {
                guard let a = approximate.constantValue as? NSNumber, isJSONBool(a), !a.boolValue else {
                    throw config.fail("'\(function)' with approximate=true (the tanh form) is not supported")
                }
            }
            try refuseRest(args, function)
            return OpLayer(op: .activation(spec), inputs: [x])
        }
        switch name {
        case "math.negative", "negative", "__operators__.neg":
            var args = try tfArguments(first: "x")
            let x = try tensorOperand(args.removeValue(forKey: "x")!, "x")
            try refuseRest(args, function)
            return OpLayer(op: .rescaling(scale: [-1], offset: [0]), inputs: [x])
        case "nn.softmax", "math.softmax":
            var args = try tfArguments(first: "logits")
            let x = try tensorOperand(args.removeValue(forKey: "logits")!, "logits")
            let axis = try pop(&args, "axis").map { try integer($0, "axis") } ?? -1
            try refuseRest(args, function)
            return OpLayer(op: .softmax(axis: axis, log: false), inputs: [x])
        case "math.reduce_mean", "reduce_mean", "math.reduce_max", "reduce_max", "math.reduce_sum", "reduce_sum":
            var args = try tfArguments(first: "input_tensor")
            let x = try tensorOperand(args.removeValue(forKey: "input_tensor")!, "input_tensor")
            let axis = pop(&args, "axis")
            let keep = try pop(&args, "keepdims").map { try boolean($0, "keepdims") } ?? false
            try refuseRest(args, function)
            let kind: Reduction = name.hasSuffix("max") ? .max : name.hasSuffix("sum") ? .sum : .mean
            return OpLayer(op: try spatialReduction(kind, axis: axis, keepDims: keep, rank: shapes[x].count + 1), inputs: [x])
        case "image.resize":
            var args = try tfArguments(first: "images")
            let x = try tensorOperand(args.removeValue(forKey: "images")!, "images")
            guard let size = args.removeValue(forKey: "size") else { throw config.fail("'\(function)' has no size") }
            let method = try pop(&args, "method").map { try text($0, "method") } ?? "bilinear"
            for key in ["preserve_aspect_ratio", "antialias"] {
                if let v = pop(&args, key), try boolean(v, key) { throw config.fail("'\(function)' with \(key)=True is not supported") }
            }
            try refuseRest(args, function)
            return OpLayer(op: try resize(size.constantValue, method: method, crop: false), inputs: [x])
        case "__operators__.getitem":
            var args = try tfArguments(first: "tensor")
            let x = try tensorOperand(args.removeValue(forKey: "tensor")!, "tensor")
            guard let spec = args.removeValue(forKey: "slice_spec") else { throw config.fail("'\(function)' has no slice_spec") }
            try refuseRest(args, function)
            return OpLayer(op: try subscription(spec, rank: shapes[x].count + 1), inputs: [x])
        case "concat":
            var args = try tfArguments(first: "values")
            let values = args.removeValue(forKey: "values")!
            let axis = try pop(&args, "axis").map { try integer($0, "axis") }
            try refuseRest(args, function)
            guard let axis else { throw config.fail("'\(function)' has no axis") }
            return try concatenation(values, axis: axis)
        case "reshape":
            var args = try tfArguments(first: "tensor")
            let x = try tensorOperand(args.removeValue(forKey: "tensor")!, "tensor")
            guard let shape = args.removeValue(forKey: "shape") else { throw config.fail("'\(function)' has no shape") }
            try refuseRest(args, function)
            return OpLayer(op: try reshape(shape), inputs: [x])
        case "compat.v1.transpose", "transpose", "linalg.matrix_transpose":
            var args = try tfArguments(first: "a")
            let x = try tensorOperand(args.removeValue(forKey: "a")!, "a")
            guard let perm = args.removeValue(forKey: "perm") else { throw config.fail("'\(function)' without perm is not supported") }
            if let conjugate = pop(&args, "conjugate"), !(conjugate.constantValue.map(isFalse) ?? false) {
                throw config.fail("'\(function)' with conjugate is not supported")
            }
            try refuseRest(args, function)
            return OpLayer(op: try permutation(perm), inputs: [x])
        default:
            throw config.fail("operation '\(function)' is not supported")
        }
    }

    /// Arguments left over after an operation took what it understands (a null one is the
    /// TF function's default).
    private func refuseRest(_ args: [String: CallValue], _ function: String) throws {
        if let key = args.keys.sorted().first(where: { !args[$0]!.isNull }) {
            throw config.fail("operation '\(function)': argument '\(key)' (\(briefJSON(args[key]!.constantValue ?? "a tensor"))) is not supported")
        }
    }

    // MARK: Keras 3 operations

    private func parseKeras3Op() throws -> OpLayer {
        let cls = config.className
        guard call.setKeywords.isEmpty else {
            throw config.fail("call keyword '\(call.setKeywords[0])' is not supported")
        }
        let binary: [String: Arithmetic] = [
            "Add": .add, "Subtract": .subtract, "Multiply": .multiply, "Divide": .divide, "TrueDivide": .divide,
            "Maximum": .maximum, "Minimum": .minimum,
        ]
        if let kind = binary[cls] {
            try onlyConfigKeys([])
            guard call.args.count == 2 else { throw config.fail("expects 2 operands, got \(call.args.count)") }
            return try arithmetic(kind, operand(call.args[0], "x1"), operand(call.args[1], "x2"))
        }
        let unary: [String: ActivationSpec] = [
            "Relu": .relu, "Relu6": .relu6, "Sigmoid": .sigmoid, "Tanh": ActivationSpec(.tanh), "Silu": .swish,
            "Swish": .swish, "Exp": ActivationSpec(.exponential), "Softplus": ActivationSpec(.softplus),
            "Softsign": ActivationSpec(.softsign), "Elu": ActivationSpec(.elu, alpha: 1), "Selu": ActivationSpec(.selu),
            "HardSigmoid": ActivationSpec(.hardSigmoid, alpha: 1.0 / 6.0), "HardSilu": ActivationSpec(.hardSilu),
            "HardSwish": ActivationSpec(.hardSilu), "Mish": ActivationSpec(.mish), "Sqrt": ActivationSpec(.sqrt),
            "Rsqrt": ActivationSpec(.rsqrt), "Square": ActivationSpec(.square), "Log": ActivationSpec(.log),
        ]
        if let spec = unary[cls] {
            try onlyConfigKeys(cls == "Elu" ? ["alpha"] : [])
            if cls == "Elu", try config.double("alpha", default: 1) != 1 {
                throw config.fail("alpha \(try config.double("alpha")) is not supported (1 only)")
            }
            return OpLayer(op: .activation(spec), inputs: [try singleTensor()])
        }
        switch cls {
        case "Gelu":
            try onlyConfigKeys(["approximate"])
            guard !(try config.bool("approximate", default: true)) else {
                throw config.fail("approximate=True (the tanh form) is not supported")
            }
            return OpLayer(op: .activation(ActivationSpec(.gelu)), inputs: [try singleTensor()])
        case "Negative":
            try onlyConfigKeys([])
            return OpLayer(op: .rescaling(scale: [-1], offset: [0]), inputs: [try singleTensor()])
        case "Softmax", "LogSoftmax":
            try onlyConfigKeys(["axis"])
            return OpLayer(op: .softmax(axis: try config.int("axis", default: -1), log: cls == "LogSoftmax"),
                           inputs: [try singleTensor()])
        case "Mean", "Max", "Sum":
            try onlyConfigKeys(["axis", "keepdims", "initial"])
            if config.has("initial") { throw config.fail("'initial' is not supported") }
            let x = try singleTensor()
            let axis: CallValue? = config.has("axis") ? .constant(config.dict["axis"]!) : nil
            let kind: Reduction = cls == "Max" ? .max : cls == "Sum" ? .sum : .mean
            return OpLayer(op: try spatialReduction(kind, axis: axis, keepDims: try config.bool("keepdims", default: false),
                                                    rank: shapes[x].count + 1), inputs: [x])
        case "Resize":
            try onlyConfigKeys(["size", "interpolation", "antialias", "crop_to_aspect_ratio", "pad_to_aspect_ratio",
                                "fill_mode", "fill_value", "data_format"])
            if try config.bool("antialias", default: false) { throw config.fail("antialias=True is not supported") }
            if try config.bool("pad_to_aspect_ratio", default: false) { throw config.fail("pad_to_aspect_ratio=True is not supported") }
            // fill_mode / fill_value colour only pad_to_aspect_ratio's padding, refused above.
            _ = (config.has("fill_mode"), config.has("fill_value"))
            let format = config.dict["data_format"]
            guard format == nil || format is NSNull || format as? String == "channels_last" else {
                throw config.fail("data_format \(briefJSON(format!)) is not supported (channels_last only)")
            }
            return OpLayer(op: try resize(config.dict["size"], method: try config.string("interpolation", default: "bilinear"),
                                          crop: try config.bool("crop_to_aspect_ratio", default: false)),
                           inputs: [try singleTensor()])
        case "GetItem":
            try onlyConfigKeys([])
            guard call.args.count == 2, case .tensor(let ref) = call.args[0] else {
                throw config.fail("expects a tensor and a subscript")
            }
            let x = index(of: ref)
            return OpLayer(op: try subscription(call.args[1], rank: shapes[x].count + 1), inputs: [x])
        case "Concatenate":
            try onlyConfigKeys(["axis"])
            guard call.args.count == 1 else { throw config.fail("expects one list of tensors") }
            return try concatenation(call.args[0], axis: try config.int("axis", default: 0))
        case "Reshape":
            try onlyConfigKeys(["newshape"])
            guard config.has("newshape") else { throw config.fail("config has no 'newshape'") }
            return OpLayer(op: try reshape(.constant(config.dict["newshape"]!)), inputs: [try singleTensor()])
        case "Transpose":
            try onlyConfigKeys(["axes"])
            guard config.has("axes") else { throw config.fail("a transpose without 'axes' is not supported") }
            return OpLayer(op: try permutation(.constant(config.dict["axes"]!)), inputs: [try singleTensor()])
        default:
            throw config.fail("operation '\(cls)' (\(config.dict["module"] as? String ?? "keras ops")) is not supported")
        }
    }

    /// A Keras 3 operation's config holds `name` and its own parameters, nothing else.
    private func onlyConfigKeys(_ keys: Set<String>) throws {
        let allowed = keys.union(["name"])
        if let key = config.dict.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw config.fail("config key '\(key)' is not understood")
        }
    }

    private func singleTensor() throws -> Int {
        guard call.args.count == 1 else { throw config.fail("expects 1 operand, got \(call.args.count)") }
        return try tensorOperand(call.args[0], "x")
    }

    // MARK: Shared lowering

    private func operand(_ value: CallValue, _ what: String) throws -> Operand {
        if case .tensor(let ref) = value { return .tensor(index(of: ref)) }
        guard let constant = value.constantValue else { throw config.fail("operand '\(what)' mixes tensors and constants") }
        return .constant(try channelConstant(constant, what))
    }

    private func tensorOperand(_ value: CallValue, _ what: String) throws -> Int {
        guard case .tensor(let ref) = value else {
            throw config.fail("operand '\(what)' is \(briefJSON(value.constantValue ?? "a list")), expected a tensor")
        }
        return index(of: ref)
    }

    /// A constant operand: a number, or an array whose every dimension but the last is 1 (one
    /// value per channel, as a per-channel affine can apply it). Keras 3 writes arrays as
    /// `{"class_name": "__numpy__", "config": {"value": ...}}`.
    private func channelConstant(_ value: Any, _ what: String) throws -> [Float] {
        var v = value
        if let dict = v as? [String: Any] {
            guard dict["class_name"] as? String == "__numpy__" || dict["class_name"] as? String == "__tensor__",
                  let c = dict["config"] as? [String: Any], let inner = c["value"] else {
                throw config.fail("operand '\(what)' (\(briefJSON(value))) is not a number or an array")
            }
            v = inner
        }
        if let n = number(v) { return [Float(n)] }
        var dims: [Int] = []
        var level: Any = v
        while let list = level as? [Any] {
            dims.append(list.count)
            guard let first = list.first else { break }
            level = first
        }
        let flat = flatten(v)
        guard !dims.isEmpty, dims.dropLast().allSatisfy({ $0 == 1 }), let values = flat, values.count == dims.last else {
            throw config.fail("constant operand '\(what)' (\(briefJSON(value))) is not a number or one value per channel")
        }
        return values.map(Float.init)
    }

    private func flatten(_ value: Any) -> [Double]? {
        if let n = number(value) { return [n] }
        guard let list = value as? [Any] else { return nil }
        var out: [Double] = []
        for item in list {
            guard let inner = flatten(item) else { return nil }
            out += inner
        }
        return out
    }

    private func arithmetic(_ kind: Arithmetic, _ a: Operand, _ b: Operand) throws -> OpLayer {
        switch (a, b) {
        case (.tensor(let x), .tensor(let y)):
            let merge: MergeKind
            switch kind {
            case .add: merge = .add
            case .subtract: merge = .subtract
            case .multiply: merge = .multiply
            case .maximum: merge = .maximum
            case .minimum: merge = .minimum
            case .divide: throw config.fail("dividing by a tensor is not supported")
            }
            return OpLayer(op: .merge(merge), inputs: [x, y])
        case (.tensor(let x), .constant(let c)):
            try checkChannels(c, x)
            switch kind {
            case .add: return OpLayer(op: .rescaling(scale: [1], offset: c), inputs: [x])
            case .subtract: return OpLayer(op: .rescaling(scale: [1], offset: c.map { -$0 }), inputs: [x])
            case .multiply: return OpLayer(op: .rescaling(scale: c, offset: [0]), inputs: [x])
            case .divide:
                guard c.allSatisfy({ $0 != 0 }) else { throw config.fail("divides by zero") }
                return OpLayer(op: .rescaling(scale: c.map { 1 / $0 }, offset: [0]), inputs: [x])
            case .maximum where c.allSatisfy({ $0 == 0 }):
                return OpLayer(op: .activation(.relu), inputs: [x])
            case .maximum, .minimum:
                throw config.fail("\(kind.rawValue) with the constant \(c.count == 1 ? "\(c[0])" : "\(c)") is not supported")
            }
        case (.constant(let c), .tensor(let x)):
            try checkChannels(c, x)
            switch kind {
            case .add, .multiply, .maximum, .minimum: return try arithmetic(kind, b, a)
            case .subtract: return OpLayer(op: .rescaling(scale: [-1], offset: c), inputs: [x])
            case .divide: throw config.fail("dividing a constant by a tensor is not supported")
            }
        case (.constant, .constant):
            throw config.fail("both operands are constants")
        }
    }

    private func checkChannels(_ c: [Float], _ x: Int) throws {
        let channels = shapes[x].last ?? -1
        guard c.count == 1 || c.count == channels else {
            throw config.fail("a constant of \(c.count) values does not broadcast over shape \(fmt(shapes[x]))")
        }
    }

    /// A mean, max or sum over the spatial axes of an image (1 and 2 counting the batch) is a
    /// global pooling (or sum); other axes are refused.
    private func spatialReduction(_ kind: Reduction, axis: CallValue?, keepDims: Bool, rank: Int) throws -> LayerOp {
        guard let value = axis?.constantValue, !(value is NSNull) else { throw config.fail("a reduction over every axis is not supported") }
        let raw: [Double]
        if let n = number(value) { raw = [n] } else if let list = flatten(value) { raw = list } else {
            throw config.fail("axis \(briefJSON(value)) is not an integer or a list of integers")
        }
        let axes = Set(raw.compactMap(integral).map { $0 < 0 ? $0 + rank : $0 })
        guard rank == 4, axes == [1, 2], raw.count == 2 else {
            throw config.fail("a reduction over axes \(briefJSON(value)) of a rank-\(rank) tensor is not supported (the spatial axes [1, 2] of an image only)")
        }
        switch kind {
        case .mean: return .globalPool(.average, keepDims: keepDims)
        case .max: return .globalPool(.max, keepDims: keepDims)
        case .sum: return .globalSum(keepDims: keepDims)
        }
    }

    /// tf.image.resize / keras.ops.image.resize to a constant size, without antialiasing.
    private func resize(_ size: Any?, method: String, crop: Bool) throws -> LayerOp {
        guard let list = size.flatMap(flatten)?.compactMap(integral), list.count == 2, list.allSatisfy({ $0 > 0 }) else {
            throw config.fail("resize to size \(briefJSON(size ?? "a tensor")) is not supported (a constant [height, width])")
        }
        guard let interpolation = Interpolation(rawValue: method) else {
            throw config.fail("resize method '\(method)' is not supported (bilinear, nearest, bicubic, area)")
        }
        return .resize(ResizeSpec(height: list[0], width: list[1], interpolation: interpolation, cropToAspectRatio: crop))
    }

    /// A subscript `x[...]` as tf-keras (`slice_spec`: `{"start", "stop", "step"}`, an integer,
    /// `{"class_name": "__ellipsis__"}`) and Keras 3 (`{"class_name": "__slice__", "config": ...}`)
    /// write it: basic slices and indices on any axis but the batch, one ellipsis. New axes
    /// (None), tensors as bounds and boolean or list indexing are refused.
    private func subscription(_ spec: CallValue, rank: Int) throws -> LayerOp {
        guard let value = spec.constantValue else { throw config.fail("a subscript holding a tensor is not supported") }
        let items = value as? [Any] ?? [value]
        enum Item { case axis(SliceAxis), ellipsis }
        func bound(_ v: Any?, _ what: String) throws -> Int? {
            guard let v, !(v is NSNull) else { return nil }
            guard let n = v as? NSNumber, !isJSONBool(n), let i = integral(n.doubleValue) else {
                throw config.fail("slice \(what) \(briefJSON(v)) is not an integer")
            }
            return i
        }
        let parsed = try items.map { item -> Item in
            if let n = item as? NSNumber, !isJSONBool(n), let i = integral(n.doubleValue) {
                return .axis(SliceAxis(start: i, stop: nil, step: 1, isIndex: true))
            }
            if let dict = item as? [String: Any] {
                if dict["class_name"] as? String == "__ellipsis__" { return .ellipsis }
                let s = dict["class_name"] as? String == "__slice__" ? dict["config"] as? [String: Any] ?? [:] : dict
                if Set(s.keys).isSubset(of: ["start", "stop", "step"]), !s.isEmpty || dict["class_name"] != nil {
                    let step = try bound(s["step"], "step") ?? 1
                    guard step != 0 else { throw config.fail("a slice with step 0") }
                    return .axis(SliceAxis(start: try bound(s["start"], "start"), stop: try bound(s["stop"], "stop"), step: step))
                }
            }
            if item is NSNull { throw config.fail("a subscript with a new axis (None) is not supported") }
            throw config.fail("subscript item \(briefJSON(item)) is not supported (slices, integers and one ellipsis)")
        }
        let ellipses = parsed.indices.filter { if case .ellipsis = parsed[$0] { return true } else { return false } }
        guard ellipses.count <= 1 else { throw config.fail("a subscript with more than one ellipsis") }
        var axes = parsed.compactMap { item -> SliceAxis? in if case .axis(let a) = item { return a } else { return nil } }
        guard axes.count <= rank else { throw config.fail("a subscript of \(axes.count) axes on a rank-\(rank) tensor") }
        if let e = ellipses.first { axes.insert(contentsOf: Array(repeating: SliceAxis.all, count: rank - axes.count), at: e) }
        guard let batch = axes.first, !batch.isIndex, batch.start == nil, batch.stop == nil, batch.step == 1 else {
            throw config.fail("a subscript of the batch axis is not supported (it must be ':')")
        }
        return .slice(Array(axes.dropFirst()))
    }

    private func concatenation(_ values: CallValue, axis: Int) throws -> OpLayer {
        guard case .list(let items) = values else { throw config.fail("expects a list of tensors to concatenate") }
        let inputs = try items.enumerated().map { try tensorOperand($0.element, "values[\($0.offset)]") }
        return OpLayer(op: .concatenate(axis: axis), inputs: inputs)
    }

    /// A reshape's target counts the batch: its first entry must leave the batch alone (-1 or null).
    private func reshape(_ shape: CallValue) throws -> LayerOp {
        guard let list = shape.constantValue as? [Any], let first = list.first,
              first is NSNull || number(first) == -1 else {
            throw config.fail("reshape to \(briefJSON(shape.constantValue ?? "a tensor")) is not supported (the first entry must keep the batch: -1 or None)")
        }
        let target = try list.dropFirst().map { item -> Int in
            if item is NSNull { return -1 }
            guard let n = number(item).flatMap(integral), n >= -1 else { throw config.fail("reshape target \(briefJSON(list)) is not a list of sizes") }
            return n
        }
        return .reshape(target: target)
    }

    private func permutation(_ perm: CallValue) throws -> LayerOp {
        guard let list = perm.constantValue.flatMap(flatten)?.compactMap(integral), list.first == 0,
              Set(list) == Set(0..<list.count) else {
            throw config.fail("transpose with perm \(briefJSON(perm.constantValue ?? "a tensor")) is not supported (the batch axis must stay first)")
        }
        return .permute(dims: Array(list.dropFirst()))
    }

    private func integer(_ value: CallValue, _ what: String) throws -> Int {
        guard let n = value.constantValue.flatMap(number).flatMap(integral) else {
            throw config.fail("'\(what)' is \(briefJSON(value.constantValue ?? "a tensor")), expected an integer")
        }
        return n
    }

    private func text(_ value: CallValue, _ what: String) throws -> String {
        guard let t = value.constantValue as? String else {
            throw config.fail("'\(what)' is \(briefJSON(value.constantValue ?? "a tensor")), expected a string")
        }
        return t
    }

    private func boolean(_ value: CallValue, _ what: String) throws -> Bool {
        guard let n = value.constantValue as? NSNumber, isJSONBool(n) else {
            throw config.fail("'\(what)' is \(briefJSON(value.constantValue ?? "a tensor")), expected true or false")
        }
        return n.boolValue
    }

    /// Takes a keyword; null counts as not given.
    private func pop(_ args: inout [String: CallValue], _ key: String) -> CallValue? {
        guard let value = args.removeValue(forKey: key), !value.isNull else { return nil }
        return value
    }

    private func isFalse(_ value: Any) -> Bool { (value as? NSNumber).map { isJSONBool($0) && !$0.boolValue } ?? false }
}
