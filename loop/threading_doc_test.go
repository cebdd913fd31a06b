package loop

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"slices"
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

// threadingDirs are the packages the rule covers: loop and the packages
// beside it that embedders call.
var threadingDirs = []string{".", "pubsub", "wsclient", "natsbroker", "metrics", "realtime"}

// threadingWords are the contract words a first doc line starts with.
// "Not goroutine-safe" is for values one owner serialises (a
// HistoryBuffer), which are neither tied to a loop nor safe to share.
var threadingWords = []string{"Loop-only", "Goroutine-safe", "Not goroutine-safe"}

// TestDocSaysThreading keeps the package's threading rule (doc.go) true:
// the first line of every exported function's and method's doc, in loop
// and the packages beside it, says "Loop-only" or "Goroutine-safe"
// (optionally qualified: "Loop-only, or before Start.") or "Not
// goroutine-safe", unless threadingExceptions lists it.
func TestDocSaysThreading(t *testing.T) {
	seen := map[string]bool{}
	for _, dir := range threadingDirs {
		checkThreadingDocs(t, dir, seen)
	}
	for name := range threadingExceptions {
		if !seen[name] {
			t.Errorf("threadingExceptions lists %s, which is gone: remove it", name)
		}
	}
}

func checkThreadingDocs(t *testing.T, dir string, seen map[string]bool) {
	fset := token.NewFileSet()
	notTest := func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }
	pkgs, err := parser.ParseDir(fset, dir, notTest, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
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
				if dir != "." {
					name = dir + "." + name
				}
				seen[name] = true
				if _, ok := threadingExceptions[name]; ok {
					continue
				}
				first := ""
				if fd.Doc != nil {
					first, _, _ = strings.Cut(fd.Doc.Text(), "\n")
				}
				if !slices.ContainsFunc(threadingWords, func(w string) bool { return strings.HasPrefix(first, w) }) {
					t.Errorf("%s (%s): first doc line %q does not start with one of %q",
						name, fset.Position(fd.Pos()), first, threadingWords)
				}
			}
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
