# make demo: run a program, gcore it at step 3, let it run on to step 7, rcore it back to step 3,
# and watch it print steps 3..10 exactly as it did the first time.
set pagination off
set confirm off
# Keep the demo's checkpoints (rcore saves before-rcore first) out of your own store.
set checkpoint-dir examples/build/checkpoints
break report if step == 3
run
echo \n--- at step 3: save the process with gcore\n
print total
gcore examples/build/demo.core
delete
break report if step == 7
continue
echo \n--- at step 7: the program has moved on\n
print total
print list->value
echo \n--- rcore: back to step 3\n
restore-core-file examples/build/demo.core
print total
print list->value
bt
delete
echo \n--- continue: the program prints steps 3..10 again, as it did the first time\n
continue
