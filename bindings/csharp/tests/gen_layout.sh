#!/usr/bin/env bash
# Writes a C program to stdout that prints, for every struct of include/wtd.h,
#   <struct> size <sizeof>      and      <struct>.<field> off <offsetof>
# The C# test program compares these with Marshal.SizeOf / Marshal.OffsetOf.
# Usage: gen_layout.sh path/to/wtd.h > layout.c
set -euo pipefail
header="$1"
echo '#include <stdio.h>'
echo '#include <stddef.h>'
echo "#include \"$header\""
echo 'int main(void) {'
awk '
  /^typedef struct [a-z_]+ \{/ { name = $3; inside = 1;
      printf "    printf(\"%s size %%zu\\n\", sizeof(struct %s));\n", name, name; next }
  inside && /^\} / { inside = 0; next }
  inside && /^    [^ *\/].*;$/ {
      line = $0; sub(/;$/, "", line); sub(/\[[A-Z_0-9]+\]$/, "", line);
      n = split(line, parts, /[ *]+/); field = parts[n];
      printf "    printf(\"%s.%s off %%zu\\n\", offsetof(struct %s, %s));\n", name, field, name, field }
' "$header"
echo '    return 0;'
echo '}'
