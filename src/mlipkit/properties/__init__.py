"""Properties of a potential, each computable with a mlipkit model or any ASE
calculator and reported side by side: vibrations, phonons, elastic constants
and equation of state, vacancies, surfaces, relaxations and reaction paths."""
