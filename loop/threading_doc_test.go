package loop

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"strings"
	"testing"
)

// threadingExceptions are the exported functions and methods whose doc
// need not start with the contract word, and why.
var threadingExceptions = map[string]string{
	// Hooks the loop calls on the handler (they run on the loop by
	// construction; the application does not call them).
	"WebSocketBase.Open":      "no-op hook",
	"WebSocketBase.OnMessage": "no-op hook",
	"WebSocketBase.OnClose":   "no-op hook",
	"WebSocketBase.OnPing":    "no-op hook",
	"WebSocketBase.OnPong":    "no-op hook",
	"HandlerFunc.Serve":       "Handler implementation the loop calls",
	"Methods.Serve":           "Handler implementation the loop calls",
	// Pure methods of values that hold no loop state.
	"Histogram.Count": "sums a snapshot's counts",
}

// TestDocSaysThreading keeps the package's threading rule (doc.go) true:
// the first line of every exported function's and method's doc says
// "Loop-only" or "Goroutine-safe" (optionally qualified: "Loop-only, or
// before Start."), unless threadingExceptions lists it.
func TestDocSaysThreading(t *testing.T) {
	fset := token.NewFileSet()
	notTest := func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }
	pkgs, err := parser.ParseDir(fset, ".", notTest, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, p := range pkgs {
		for _, f := range p.Files {
			for _, d := range f.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || !fd.Name.IsExported() {
					continue
				}
				name := fd.Name.Name
				if fd.Recv != nil {
					recv := receiverName(fd.Recv.List[0].Type)
					if !ast.IsExported(recv) {
						continue // unexported type: gnet's or an interface's hooks
					}
					name = recv + "." + name
				}
				seen[name] = true
				if _, ok := threadingExceptions[name]; ok {
					continue
				}
				first := ""
				if fd.Doc != nil {
					first, _, _ = strings.Cut(fd.Doc.Text(), "\n")
				}
				if !strings.HasPrefix(first, "Loop-only") && !strings.HasPrefix(first, "Goroutine-safe") {
					t.Errorf("%s (%s): first doc line %q does not start with Loop-only or Goroutine-safe",
						name, fset.Position(fd.Pos()), first)
				}
			}
		}
	}
	for name := range threadingExceptions {
		if !seen[name] {
			t.Errorf("threadingExceptions lists %s, which is gone: remove it", name)
		}
	}
}

// receiverName is the type name of a method's receiver (T, *T, T[P]).
func receiverName(e ast.Expr) string {
	for {
		switch x := e.(type) {
		case *ast.StarExpr:
			e = x.X
		case *ast.IndexExpr:
			e = x.X
		case *ast.IndexListExpr:
			e = x.X
		case *ast.Ident:
			return x.Name
		default:
			return ""
		}
	}
}
