package pipelines

// topoOrder orders nodes so that each comes after its deps, keeping the
// given order among nodes that do not depend on each other (depth-first
// post-order over nodes in their given order). Every cycle met is returned
// as the path of nodes that closes it, first node repeated at the end
// (a → b → a); nodes of a cycle are still placed in order, so callers get a
// complete order to report further diagnostics against.
func topoOrder(nodes []string, deps map[string][]string) (order []string, cycles [][]string) {
	const (
		white = iota
		grey  // on the DFS stack
		black // placed
	)
	color := make(map[string]int, len(nodes))
	var stack []string
	var visit func(n string)
	visit = func(n string) {
		color[n] = grey
		stack = append(stack, n)
		for _, d := range deps[n] {
			switch color[d] {
			case white:
				visit(d)
			case grey:
				// The stack from d to n is the cycle; the engine would
				// otherwise wait forever on it.
				i := len(stack) - 1
				for stack[i] != d {
					i--
				}
				cycle := append([]string(nil), stack[i:]...)
				cycles = append(cycles, append(cycle, d))
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
		order = append(order, n)
	}
	for _, n := range nodes {
		if color[n] == white {
			visit(n)
		}
	}
	return order, cycles
}
