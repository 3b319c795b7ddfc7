# Plots bench/datapath_program.ts's CSV (--csv: the medians per N): programming N vxlan peers (neighbour, FDB
# entry, route each) through FFI with plain routes, through the agent's kernel layer (routes via next-hop
# objects), and through ip/bridge -batch.
# Usage: gnuplot -e "csv='bench/results/datapath_program.csv'; out='bench/results/datapath_program.png'" bench/plot_datapath_program.gp
if (!exists("csv")) csv = "bench/results/datapath_program.csv"
if (!exists("out")) out = "bench/results/datapath_program.png"
set terminal pngcairo size 900,520 font "sans,10"
set output out
set title "Programming N vxlan peers into a fresh namespace (medians of 5 rounds)"
set xlabel "peers"
set ylabel "ms"
set key top left box opaque
set grid
set xrange [0:*]
set yrange [0:*]
set datafile separator ","
set key autotitle columnhead
plot csv using 1:3 with linespoints lw 2 pt 5 title "FFI, plain routes (as flanneld and ip write them)", \
     csv using 1:5 with linespoints lw 2 pt 9 dt 2 title "ip/bridge -batch, plain routes", \
     csv using 1:4 with linespoints lw 2 pt 7 title "weft agent: routes via next-hop objects"
