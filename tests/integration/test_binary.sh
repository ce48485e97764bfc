# The binaries users run (build/ember, build/ember-jailer, build/ember-uffd)
# as Firecracker ships its own: static-pie, debug info split off into
# <binary>.debug beside each, with the DWARF sections Firecracker's .debug
# files carry; the binary keeps its symbols and a .gnu_debuglink through
# which tools find the debug info.

test_binary_debug_info_split_off() {
	local b bin dbg sections s addr where
	if ldd "$EMBER" 2>/dev/null | grep -q libasan; then
		skip "the release binaries' layout; make SAN=1 builds only sanitized ones ($EMBER)"
		return
	fi
	for b in ember ember-jailer ember-uffd; do
		bin=$BUILD/$b dbg=$BUILD/$b.debug
		need_file "$bin" || return
		[ -f "$dbg" ] || { fail "$dbg is missing (make builds it next to $bin)"; continue; }
		sections=$(readelf -SW "$dbg" | grep -oE '\] \.[a-z_.]+' | cut -c3- | tr '\n' ' ')
		for s in .debug_aranges .debug_info .debug_abbrev .debug_line .debug_frame .debug_str .debug_ranges; do
			[[ " $sections" == *" $s "* ]] || fail "$dbg has no $s section"
		done
		sections=$(readelf -SW "$bin" | grep -oE '\] \.[a-z_.]+' | cut -c3- | tr '\n' ' ')
		[[ " $sections" != *" .debug_info "* ]] || fail "$bin still carries its debug info"
		[[ " $sections" == *" .symtab "* ]] || fail "$bin lost its symbol table"
		readelf --string-dump=.gnu_debuglink "$bin" 2>/dev/null | grep -qF " $b.debug" ||
			fail "$bin has no .gnu_debuglink naming $b.debug"
		file "$bin" | grep -q "static-pie linked" || fail "$bin is not static-pie: $(file "$bin")"
		# A backtrace's address resolves to a source line through the
		# link alone.
		addr=$(nm "$bin" | awk '$3 == "main" { print $1 }')
		where=$(addr2line -e "$bin" "0x$addr")
		[[ $where == */main.c:[0-9]* ]] || fail "$bin: main at 0x$addr resolves to '$where', not a source line"
	done
}
