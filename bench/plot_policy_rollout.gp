# Plots bench/policy_scale.ts's rollout CSV: each new pod's time from its CNI registration to its rules in
# the kernel, in rollout order, beside a plain API watcher's delay for the same pods' status writes.
# Usage: gnuplot -e "csv='FILE.csv'; out='FILE.png'" bench/plot_policy_rollout.gp
if (!exists("csv")) csv = "policy_rollout.csv"
if (!exists("out")) out = "policy_rollout.png"
set terminal pngcairo size 1100,520 font "sans,10"
set output out
set datafile separator ","
set title "A new pod's time to enforcement during a 1000-pod rollout (waves of 50, one node)"
set xlabel "new pod (in rollout order)"
set ylabel "ms"
set key outside right top
set grid
set yrange [0:*]
plot csv every ::1 using 1:3 with points pt 7 ps 0.4 title "CNI registration → rules in the kernel", \
     csv every ::1 using 1:4 with points pt 6 ps 0.4 lc rgb "gray50" title "reference: API status write → watch event"
