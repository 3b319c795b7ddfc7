# Plots bench/cni_latency.ts's CSV: ADD and DEL medians against the pods already attached, weft and
# Debian's bridge + host-local. Usage: gnuplot -e "csv='cni.csv'; out='cni.png'" bench/plot_cni.gp
if (!exists("csv")) csv = "cni_latency.csv"
if (!exists("out")) out = "cni_latency.png"
set terminal pngcairo size 1100,520 font "sans,10"
set output out
set datafile separator ","
set title "CNI ADD / DEL latency as the node fills (medians)"
set xlabel "pods already attached to the bridge"
set ylabel "ms per call (process start to exit)"
set key outside right top
set grid
set yrange [0:*]
set xrange [0:*]
sel(p, o) = sprintf("< grep -F ',%s,%s,' %s | grep -v '^0,'", p, o, csv)
plot sel("weft", "ADD") using 1:4 with linespoints lw 2 pt 7 title "weft ADD (in the plugin process)", \
     sel("weft via agent", "ADD") using 1:4 with linespoints lw 2 pt 9 title "weft ADD (via the agent)", \
     sel("debian", "ADD") using 1:4 with linespoints lw 2 pt 5 title "bridge+host-local ADD", \
     sel("weft", "DEL") using 1:4 with linespoints lw 1 pt 6 dt 2 title "weft DEL (in the plugin process)", \
     sel("weft via agent", "DEL") using 1:4 with linespoints lw 1 pt 8 dt 2 title "weft DEL (via the agent)", \
     sel("debian", "DEL") using 1:4 with linespoints lw 1 pt 4 dt 2 title "bridge+host-local DEL", \
     sel("weft before", "ADD") using 1:4 with linespoints lw 1 pt 3 lc rgb "gray60" title "weft ADD before (bench --before)", \
     sel("empty Deno script", "run") using 1:4 with linespoints lw 1 pt 1 dt 3 lc rgb "gray40" title "an empty Deno script"
