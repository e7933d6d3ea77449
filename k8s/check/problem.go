package check

// Problem is one finding: the field's path inside the object (or file) and
// what is wrong with it.
type Problem struct{ Path, Message string }

func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}
