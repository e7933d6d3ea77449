package check

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	istionetv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
)

// scheme knows every API type the manifests may use. An object of any other
// kind is a problem: it could not be checked.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme,
		autoscalingv2.AddToScheme, networkingv1.AddToScheme,
		istiosecv1.AddToScheme, istionetv1.AddToScheme, istionetv1alpha3.AddToScheme,
		gwv1.Install, gwv1beta1.Install, egv1a1.AddToScheme,
		monitoringv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// strict decodes like the API server with fieldValidation=Strict: unknown
// and duplicate fields are errors.
var strict = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
	kjson.SerializerOptions{Yaml: false, Strict: true})

var (
	strictPrefix = regexp.MustCompile(`^strict decoding error: `)
	jsonPosition = regexp.MustCompile(`\s*\(line \d+:\d+\):?`)
	protoPrefix  = regexp.MustCompile(`^proto:[\s\x{00a0}]+`)
)

// Decode fills o.Typed from o.JSON, strictly, and returns one problem per
// unknown or mistyped field, each naming the field's path. Istio's generated
// types accept unknown fields inside spec (their JSON unmarshaler allows
// them), so an Istio spec is also checked field by field against its proto.
func Decode(o *Object) []Problem {
	obj, _, err := strict.Decode(o.JSON, nil, nil)
	var problems []Problem
	if err != nil {
		if se, ok := runtime.AsStrictDecodingError(err); ok && obj != nil {
			for _, e := range se.Errors() {
				problems = append(problems, fieldProblem(strictPrefix.ReplaceAllString(e.Error(), "")))
			}
		} else {
			return []Problem{{Message: "cannot decode as " + o.Kind + ": " + cleanDecodeError(err)}}
		}
	}
	o.Typed = obj
	if spec := protoSpec(obj); spec != nil {
		var doc map[string]any
		if err := json.Unmarshal(o.JSON, &doc); err == nil {
			problems = append(problems, ProtoJSON(spec, doc["spec"], "spec")...)
		}
	}
	return problems
}

// fieldProblem turns `unknown field "spec.foo"` into a problem at spec.foo.
func fieldProblem(msg string) Problem {
	if m := regexp.MustCompile(`^(unknown|duplicate) field "([^"]+)"$`).FindStringSubmatch(msg); m != nil {
		return Problem{Path: m[2], Message: m[1] + " field"}
	}
	return Problem{Message: msg}
}

func cleanDecodeError(err error) string {
	return strings.TrimSpace(jsonPosition.ReplaceAllString(err.Error(), ""))
}

// protoSpec returns a new, empty message of the type of obj's Spec field when
// that is a protobuf message (Istio), else nil.
func protoSpec(obj runtime.Object) proto.Message {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	f := v.Elem().FieldByName("Spec")
	if !f.IsValid() || !f.CanAddr() {
		return nil
	}
	m, ok := f.Addr().Interface().(proto.Message)
	if !ok {
		return nil
	}
	return m.ProtoReflect().New().Interface()
}

// ProtoJSON decodes v (a JSON value as encoding/json produces it) into m the
// way protojson does by default (unknown fields and wrong types are errors),
// and reports every unknown field with its full path, which protojson itself
// does not give. Anys are followed through their "@type".
func ProtoJSON(m proto.Message, v any, path string) []Problem {
	var problems []Problem
	unknownFields(m.ProtoReflect().Descriptor(), v, path, &problems)
	if len(problems) > 0 {
		return problems
	}
	js, err := json.Marshal(v)
	if err != nil {
		return []Problem{{Path: path, Message: err.Error()}}
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, m); err != nil {
		msg := protoPrefix.ReplaceAllString(err.Error(), "")
		return []Problem{{Path: path, Message: strings.TrimSpace(jsonPosition.ReplaceAllString(msg, ""))}}
	}
	return nil
}

// wellKnown are the message types with a special JSON form: their inside is
// not a set of fields to check.
var wellKnown = map[protoreflect.FullName]bool{
	"google.protobuf.Struct": true, "google.protobuf.Value": true, "google.protobuf.ListValue": true,
	"google.protobuf.Duration": true, "google.protobuf.Timestamp": true, "google.protobuf.FieldMask": true,
	"google.protobuf.Empty": true, "google.protobuf.BoolValue": true, "google.protobuf.StringValue": true,
	"google.protobuf.BytesValue": true, "google.protobuf.Int32Value": true, "google.protobuf.Int64Value": true,
	"google.protobuf.UInt32Value": true, "google.protobuf.UInt64Value": true, "google.protobuf.FloatValue": true,
	"google.protobuf.DoubleValue": true,
}

func unknownFields(md protoreflect.MessageDescriptor, v any, path string, out *[]Problem) {
	if wellKnown[md.FullName()] {
		return
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return // a type error; protojson reports it
	}
	if md.FullName() == "google.protobuf.Any" {
		url, _ := obj["@type"].(string)
		mt, err := protoregistry.GlobalTypes.FindMessageByURL(url)
		if err != nil {
			*out = append(*out, Problem{Path: joinPath(path, "@type"), Message: fmt.Sprintf("unknown type %q", url)})
			return
		}
		rest := make(map[string]any, len(obj))
		for k, val := range obj {
			if k != "@type" {
				rest[k] = val
			}
		}
		if wellKnown[mt.Descriptor().FullName()] {
			return
		}
		unknownFields(mt.Descriptor(), rest, path, out)
		return
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fd := md.Fields().ByJSONName(k)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(k))
		}
		p := joinPath(path, k)
		if fd == nil {
			*out = append(*out, Problem{Path: p, Message: "unknown field in " + string(md.FullName())})
			continue
		}
		val := obj[k]
		switch {
		case fd.IsMap():
			if vd := fd.MapValue(); vd.Message() != nil {
				entries, _ := val.(map[string]any)
				for _, ek := range sortedKeys(entries) {
					unknownFields(vd.Message(), entries[ek], p+"["+ek+"]", out)
				}
			}
		case fd.Message() == nil:
		case fd.IsList():
			items, _ := val.([]any)
			for i, item := range items {
				unknownFields(fd.Message(), item, fmt.Sprintf("%s[%d]", p, i), out)
			}
		default:
			unknownFields(fd.Message(), val, p, out)
		}
	}
}

func joinPath(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
